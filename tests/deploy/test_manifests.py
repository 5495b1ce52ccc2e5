"""Static checks of deploy/: compose file, Dockerfile, Alertmanager, Grafana, Kubernetes.

The members of a consumer group share nothing but Kafka and the object store under
``checkpoint.dir`` (README.md, "Scaling out"): no manifest may give them a shared volume, and
the store's bucket, endpoint and credentials must line up from end to end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml

from streamgen.config import PipelineConfig, apply_overrides, build_config, load_pipeline
from streamgen.errors import ConfigError
from streamgen.io.store import S3Backend, open_store, parse_s3_url

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_PIPELINE = DEPLOY / "pipelines" / "compose.yaml"
S3_FIELDS = ("s3_endpoint", "s3_region", "s3_access_key", "s3_secret_key")


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def env_refs(cfg: PipelineConfig) -> dict[str, str]:
    """checkpoint.s3_* field -> the environment variable its ``env:NAME`` value names."""
    refs = {}
    for name in S3_FIELDS:
        value = getattr(cfg.checkpoint, name)
        if isinstance(value, str) and value.startswith("env:"):
            refs[name] = value[len("env:"):]
    return refs


def compose_default(value: str) -> str:
    """``${NAME:-default}`` -> ``default`` (what compose substitutes with NAME unset)."""
    m = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
    assert m, f"not a ${{NAME:-default}} value: {value!r}"
    return m.group(2)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def members(compose: dict) -> dict[str, dict]:
    """The compose services that run ``streamgen run`` (members of the consumer group)."""
    return {n: s for n, s in compose["services"].items() if s.get("command", [None])[0] == "run"}


def test_compose_services(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "s3", "streamgen", "streamgen-2", "replay", "prometheus", "alertmanager",
            "grafana"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert set(members(compose)) == {"streamgen", "streamgen-2"}
    for svc in members(compose).values():
        assert svc["command"] == ["run", "/pipelines/compose.yaml"]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    host_ports = [p.split(":")[0] for s in members(compose).values() for p in s["ports"]]
    assert len(host_ports) == len(set(host_ports))  # two members, two host ports
    assert services["replay"]["command"][0] == "replay"
    assert services["replay"]["healthcheck"] == {"disable": True}


def test_compose_members_share_only_kafka_and_the_object_store(compose: dict) -> None:
    cfg = load_pipeline(COMPOSE_PIPELINE)
    assert cfg.checkpoint.dir is not None and cfg.checkpoint.dir.startswith("s3://")
    assert cfg.kafka.group_id  # one group: the members split its partitions
    bucket, prefix = parse_s3_url(cfg.checkpoint.dir)
    assert prefix
    store = compose["services"]["s3"]
    assert store["image"].startswith("chrislusf/seaweedfs:")
    assert store["command"][0] == "mini"
    # The store creates the bucket at start and is healthy only once it exists.
    assert store["environment"]["S3_BUCKET"] == bucket
    check = " ".join(store["healthcheck"]["test"])
    assert f"/buckets/{bucket}/" in check and "curl -f" in check
    assert any(v.endswith(":/data") for v in store["volumes"])  # the store's data persists
    # The pipeline's endpoint is the store service on its S3 port.
    endpoint = urllib.parse.urlsplit(cfg.checkpoint.s3_endpoint)
    assert endpoint.hostname == "s3"
    assert f"{endpoint.port}:{endpoint.port}" in store["ports"]
    refs = env_refs(cfg)
    assert set(refs) == {"s3_access_key", "s3_secret_key"}
    admin = {"s3_access_key": "AWS_ACCESS_KEY_ID", "s3_secret_key": "AWS_SECRET_ACCESS_KEY"}
    for name, svc in members(compose).items():
        assert svc["depends_on"]["s3"] == {"condition": "service_healthy"}, name
        assert svc["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        # No shared checkpoint volume: the only mount is the pipeline, read-only.
        assert svc["volumes"] == ["./pipelines:/pipelines:ro"], name
        # The credentials the pipeline reads are the store's admin identity.
        for field, var in refs.items():
            assert svc["environment"][var] == store["environment"][admin[field]], (name, var)
    assert "checkpoints" not in compose["volumes"]


def test_compose_pipeline_opens_its_store(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    cfg = load_pipeline(COMPOSE_PIPELINE)
    for var in env_refs(cfg).values():
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError):  # the credentials really come from the environment
        open_store(cfg.checkpoint.dir, cfg.checkpoint)
    env = compose["services"]["streamgen"]["environment"]
    for var in env_refs(cfg).values():
        monkeypatch.setenv(var, compose_default(env[var]))
    store = open_store(cfg.checkpoint.dir, cfg.checkpoint)  # builds the client, no request
    assert isinstance(store.backend, S3Backend)
    assert store.backend.bucket == compose["services"]["s3"]["environment"]["S3_BUCKET"]


def test_compose_bind_mounts_exist(compose: dict) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_compose_pipeline_matches_scrape_config(compose: dict) -> None:
    cfg = load_pipeline(COMPOSE_PIPELINE)
    assert cfg.metrics.host == "0.0.0.0"  # reachable from the Prometheus container
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "streamgen")
    # Every member is scraped.
    assert job["static_configs"][0]["targets"] == [
        f"{name}:{cfg.metrics.port}" for name in members(compose)
    ]


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    # boto3 (s3:// checkpoint.dir) and the fast Kafka output (confluent-kafka, orjson, crc32c)
    assert re.search(r'^RUN pip install "\.\[s3,fast\]"', text, re.M)
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
            if "kind" in doc:  # kustomization.yaml has none
                docs[doc["kind"]] = doc
    return docs


def k8s_pipeline() -> PipelineConfig:
    return build_config(yaml.safe_load(k8s_docs()["ConfigMap"]["data"]["pipeline.yaml"]))


def k8s_container() -> dict:
    (container,) = k8s_docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


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


def test_k8s_has_no_shared_volume() -> None:
    docs = k8s_docs()
    assert "PersistentVolumeClaim" not in docs
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert [v for v in pod["volumes"] if set(v) - {"name", "configMap", "emptyDir"}] == []
    assert {m["mountPath"] for m in k8s_container()["volumeMounts"]} == {"/etc/streamgen", "/tmp"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def test_k8s_configmap_pipeline_is_valid() -> None:
    cfg = k8s_pipeline()
    assert cfg.metrics.host == "0.0.0.0"
    assert k8s_container()["ports"][0]["containerPort"] == cfg.metrics.port
    assert cfg.checkpoint.dir is not None and cfg.checkpoint.dir.startswith("s3://")
    bucket, prefix = parse_s3_url(cfg.checkpoint.dir)
    assert bucket and prefix
    assert cfg.checkpoint.merge_models  # one group model across the replicas


def test_k8s_secret_feeds_the_pipelines_env_references(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = k8s_docs()
    secret = docs["Secret"]
    values = secret["stringData"]
    assert all("REPLACE-ME" in v for v in values.values())  # placeholders, clearly marked
    env = {e["name"]: e for e in k8s_container()["env"]}
    refs = env_refs(k8s_pipeline())
    assert set(refs) == {"s3_access_key", "s3_secret_key"}
    used = set()
    for var in refs.values():
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in values, var
        used.add(ref["key"])
        monkeypatch.setenv(var, values[ref["key"]])
    assert used == set(values)  # every key of the Secret is used
    assert secret["metadata"]["namespace"] == yaml.safe_load(
        (K8S / "kustomization.yaml").read_text())["namespace"]
    pytest.importorskip("boto3")
    cfg = k8s_pipeline()
    store = open_store(cfg.checkpoint.dir, cfg.checkpoint)  # env: resolved, no request made
    assert isinstance(store.backend, S3Backend)


def test_k8s_member_id_is_the_pod_name() -> None:
    container = k8s_container()
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = container["args"]
    i = args.index("checkpoint.member_id=$(POD_NAME)")
    assert args[i - 1] == "--set"
    # What Kubernetes expands it to is a valid member id.
    cfg = apply_overrides(k8s_pipeline(), ["checkpoint.member_id=streamgen-7c9d8f6b5-x2k4q"])
    assert cfg.checkpoint.member_id == "streamgen-7c9d8f6b5-x2k4q"


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
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ConfigMap", "Service", "ServiceMonitor"} <= kinds
    # No volume claim; the Secret is created by hand, never by an apply (placeholders).
    assert not kinds & {"PersistentVolumeClaim", "Secret"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        k8s_docs()["Secret"]["metadata"]["namespace"]
    }
