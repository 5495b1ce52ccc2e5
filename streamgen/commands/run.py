"""``streamgen run PIPELINE.yaml``: the long-running Kafka consumer.

Consumes ``kafka.topics`` in consumer group ``kafka.group_id``, writes scores, continuations,
alerts and dead letters to their topics, checkpoints every ``checkpoint.interval_seconds``
under ``checkpoint.dir`` and serves ``/metrics`` ``/healthz`` ``/readyz``. SIGTERM or SIGINT:
finish the batch, checkpoint, commit, leave the group, exit 0. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import argparse

from streamgen.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Kafka consumer service (until SIGTERM/SIGINT)")
    p.add_argument("pipeline", help="pipeline YAML (kafka, checkpoint, metrics, model, ...)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a pipeline setting, e.g. --set kafka.group_id=g2 (repeatable)",
    )
    p.add_argument("--init-from", metavar="CKPT",
                   help="warm start: model weights from this checkpoint (used only when "
                        "checkpoint.dir has no model yet)")
    p.add_argument(
        "--kafka-option", dest="kafka_options", action="append", default=[],
        metavar="KEY=VALUE",
        help="raw kafka-python client option, e.g. session_timeout_ms=6000 (repeatable)",
    )
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="log level (info)")
    p.add_argument("--max-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings → dict (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--kafka-option: expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def run(args: argparse.Namespace) -> int:
    from streamgen.config import load_pipeline
    from streamgen.io.kafka import resolve_security
    from streamgen.io.metrics import PrometheusMetrics
    from streamgen.jsonlog import setup_logging
    from streamgen.service import Service

    cfg = load_pipeline(args.pipeline, args.overrides)
    setup_logging(args.log_level)
    resolve_security(cfg.kafka.security)  # fail fast (exit 2) on a bad or missing secret
    service = Service(
        cfg, metrics=PrometheusMetrics(), init_from=args.init_from,
        kafka_options=parse_options(args.kafka_options),
    )
    return service.run(max_seconds=args.max_seconds)
