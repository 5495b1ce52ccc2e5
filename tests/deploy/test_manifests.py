"""Static checks of deploy/: compose file, Dockerfile, Alertmanager, Grafana, Kubernetes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamgen.config import build_config, load_pipeline

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_services(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "streamgen", "replay", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["streamgen"]["command"] == ["run", "/pipelines/compose.yaml"]
    assert services["replay"]["command"][0] == "replay"
    assert services["streamgen"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["replay"]["healthcheck"] == {"disable": True}


def test_compose_bind_mounts_exist(compose: dict) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_compose_pipeline_matches_scrape_config() -> None:
    cfg = load_pipeline(DEPLOY / "pipelines" / "compose.yaml")
    assert cfg.metrics.host == "0.0.0.0"  # reachable from the Prometheus container
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "streamgen")
    assert job["static_configs"][0]["targets"] == [f"streamgen:{cfg.metrics.port}"]
    assert cfg.checkpoint.dir is not None


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["streamgen"\]$', text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_alertmanager_routes_use_known_receivers() -> None:
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    names = {r["name"] for r in am["receivers"]}
    routes = [am["route"], *am["route"].get("routes", [])]
    assert {r["receiver"] for r in routes if "receiver" in r} <= names


def test_grafana_provisioning(compose: dict) -> None:
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    prov = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamgen.yml").read_text()
    )
    path = prov["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts


# -- Kubernetes -------------------------------------------------------------------------------


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            docs[doc["kind"]] = doc
    return docs


def test_k8s_deployment() -> None:
    docs = k8s_docs()
    dep = docs["Deployment"]["spec"]
    assert dep["replicas"] >= 1
    pod = dep["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"][0] == "run"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    pipeline_path = Path(container["args"][1])
    assert str(pipeline_path.parent) in mounted


def test_k8s_configmap_pipeline_is_valid() -> None:
    cm = k8s_docs()["ConfigMap"]
    cfg = build_config(yaml.safe_load(cm["data"]["pipeline.yaml"]))
    assert cfg.metrics.host == "0.0.0.0"
    dep = k8s_docs()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert dep["ports"][0]["containerPort"] == cfg.metrics.port


def test_k8s_service_and_servicemonitor() -> None:
    docs = k8s_docs()
    svc = docs["Service"]
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert svc["metadata"]["name"] == "streamgen"  # job label the alert rules select on
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    endpoints = docs["ServiceMonitor"]["spec"]["endpoints"]
    assert {e["port"] for e in endpoints} <= port_names


def test_k8s_prometheusrule_matches_rules_file() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "streamgen.rules.yml").read_text())
    assert k8s_docs()["PrometheusRule"]["spec"]["groups"] == rules["groups"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders() -> None:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert {"Deployment", "ConfigMap", "Service", "ServiceMonitor"} <= kinds
