"""Pipeline configuration: frozen, validated once at the edge.

Defaults → pipeline YAML → ``--set dotted.key=value`` overrides, in that order. An unknown
key or a bad value raises :class:`~streamgen.errors.ConfigError` with a one-line message that
names the field (``window.length: Input should be greater than or equal to 2``).

pydantic does the validation: it gives typed, frozen models and precise field paths in its
errors, which would be several hundred lines of hand-written checks otherwise.

Examples
--------
>>> cfg = PipelineConfig()
>>> cfg.window.length, cfg.model.name
(64, 'sota')
>>> apply_overrides(cfg, ["model.name=rvae", "window.length=16"]).window.length
16
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, model_validator

from streamgen.errors import ConfigError
from streamgen.models.registry import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    settings_class,
    settings_classes,
    unknown_model,
)
from streamgen.models.settings import ModelConfig
from streamgen.models.settings import Settings as _Frozen


def _model_name(value: Any) -> str:
    """The model a ``model`` section is for (its ``name``; the default model without one)."""
    name = value.get("name", DEFAULT_MODEL) if isinstance(value, dict) else getattr(
        value, "name", DEFAULT_MODEL)
    return str(name)


if TYPE_CHECKING:
    AnyModelConfig = ModelConfig
else:
    # The ``model`` section: the settings class of the model that ``name`` picks, from the
    # registry (each model declares its settings next to its network).
    AnyModelConfig = Annotated[
        functools.reduce(operator.or_, (Annotated[cls, Tag(name)]
                                         for name, cls in settings_classes().items())),
        Discriminator(
            _model_name, custom_error_type="unknown_model",
            custom_error_message="unknown model",
        ),
    ]


class DecodeConfig(_Frozen):
    """How raw messages become records (docs/architecture.md, "Record and output contracts")."""

    key_field: str = "key"
    time_field: str = "ts"
    csv_time_column: str = "timestamp"
    # None = every numeric field other than key/time/label, fixed by the first good record.
    value_fields: list[str] | None = None
    label_field: str | None = "is_anomaly"
    max_record_bytes: int = Field(default=1_000_000, ge=64)
    max_channels: int = Field(default=256, ge=1)
    # Dead-letter records whose event time is further than this from the newest event time
    # accepted so far (0 = no check): one record stamped years ahead would otherwise make
    # every later record of its key "late".
    max_time_skew_ms: int = Field(default=0, ge=0)


class WindowConfig(_Frozen):
    """Per-key event-time sliding windows."""

    # 64 points: on the real-data suite (streamgen bench --suite real, 29 series, 3 seeds)
    # VUS-PR 0.252 (sota) / 0.237 (rvae) against 0.229 / 0.225 with 32 points; 128 and 256
    # were no better than 64 (one seed) and cost more per window.
    length: int = Field(default=64, ge=2, le=4096)
    stride: int = Field(default=1, ge=1)
    max_keys: int = Field(default=100_000, ge=1)
    # Keys with no record for this long (event time) are evicted; 0 disables idle eviction.
    idle_ttl_ms: int = Field(default=0, ge=0)
    # "drop": a record older than its key's newest goes to the DLQ with reason "late".
    # "reorder": hold records for allowed_lateness_ms and release them in event-time order;
    # anything older than what was already released is dropped to the DLQ.
    late_policy: Literal["drop", "reorder"] = "drop"
    allowed_lateness_ms: int = Field(default=0, ge=0)


class NormalizeConfig(_Frozen):
    """Online per-key scaling (exponentially weighted mean/variance)."""

    # Half-life in points of the running mean/variance; long enough to keep a level shift
    # visible for a while, short enough to follow slow drift.
    half_life: float = Field(default=500.0, gt=1.0)
    # Points whose |z| under the current stats exceeds this do not update the stats
    # (robust to the very outliers we are looking for).
    freeze_z: float = Field(default=6.0, gt=0.0)
    min_std: float = Field(default=1e-6, gt=0.0)
    # Normalized values are clipped to +-clip before they reach the model.
    clip: float = Field(default=20.0, gt=0.0)


Detector = Literal["model", "forecast", "point", "diff", "shape"]
DEFAULT_DETECTORS: tuple[Detector, ...] = ("model", "shape")


class CalibrateConfig(_Frozen):
    """Per-key calibration of raw scores."""

    method: Literal["zscore", "quantile", "pot"] = "zscore"
    # Detectors fused into each record's score (core/fusion.py): the model's window score,
    # the error of the forecast made for the point (already a term of the model's score),
    # the point's z, its first difference and the window's shape against the key's past
    # windows, each calibrated per key. Mean VUS-PR on the real-data suite / PR-AUC on the
    # synthetic quick suite, MLP sota, one seed each: model 0.264 / 0.619, model+shape
    # 0.300 / 0.612, +diff 0.292 / 0.594 (diff alone with the model: 0.258 / 0.540: it fires
    # on every edge of a square wave), +forecast 0.285 / 0.618, +point 0.20 on real data
    # (the point's z fires on every peak of a periodic series).
    detectors: list[Detector] = Field(
        default_factory=lambda: list(DEFAULT_DETECTORS), min_length=1
    )
    # Detectors that score a record only when none of `detectors` can: a key's first points,
    # before its window is full and its shape statistics exist (about 100 points); those
    # score 0 (no evidence) otherwise. [diff] gave evidence from a key's second point but
    # its noisy early values cost 0.014 mean VUS-PR on the real-data suite: off by default.
    fallback: list[Detector] = Field(default_factory=list)
    # How the detectors' tail-equivalent z values combine: "max" (the strongest; a threshold
    # keeps its tail probability per detector) or "stouffer" (their sum over the square root
    # of their count: evidence that several detectors share adds up). Real-data suite, 3
    # seeds, sota: max 0.301 VUS-PR, stouffer 0.291.
    fusion: Literal["max", "stouffer"] = "max"
    # zscore: calibrated = z of score ** (1/3) under an EW mean/variance per key.
    threshold: float = Field(default=4.0, gt=0.0)
    half_life: float = Field(default=1000.0, gt=1.0)
    # quantile: calibrated = score / running quantile; anomaly when > 1.
    quantile: float = Field(default=0.995, gt=0.5, lt=1.0)
    warmup_windows: int = Field(default=30, ge=1)
    # shape detector: windows are block-averaged to this many points per channel before
    # their per-key mean and covariance are kept (core/shape.py); 16 did as well as 32 on the
    # real-data suite at a quarter of the state.
    shape_dim: int = Field(default=16, ge=1, le=256)
    # shape detector scales: the whole window, its last half, ... (each its own detector).
    shape_scales: int = Field(default=2, ge=1, le=8)
    # shape detector: score only the newest this many blocks given the ones before them (0:
    # the whole window's distance). The whole window's distance reached VUS-PR 0.32-0.33 on
    # the real-data suite but keeps flagging for a window's length after a short anomaly
    # (synthetic quick suite PR-AUC 0.42 vs the model's 0.62); the newest block alone: real
    # 0.300, synthetic 0.612 (model and shape fused, one seed each).
    shape_recent: int = Field(default=1, ge=0, le=256)
    # pot: the quantile above which the tail is fitted, and the (EW) number of excesses
    # over it before the fit is used.
    pot_level: float = Field(default=0.98, gt=0.5, lt=1.0)
    pot_min_excesses: float = Field(default=10.0, ge=1.0)


class AlertConfig(_Frozen):
    """Per-key alerting on calibrated scores (hysteresis, N-of-M, cooldown)."""

    enabled: bool = True
    fire_threshold: float | None = None  # None = calibrate.threshold
    resolve_threshold: float | None = None  # None = 0.75 * fire threshold
    min_count: int = Field(default=1, ge=1)
    within: int = Field(default=1, ge=1)
    resolve_after: int = Field(default=5, ge=1)
    cooldown_ms: int = Field(default=0, ge=0)
    max_open: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _n_of_m(self) -> AlertConfig:
        if self.min_count > self.within:
            raise ValueError("min_count must be <= within")
        return self


class BatchConfig(_Frozen):
    """Micro-batching: pull up to max_records or wait at most max_wait_ms."""

    max_records: int = Field(default=1024, ge=1)
    # 20 ms: at 5,000 records/s over 100 keys on the local Tansu (benchmarks/bench_e2e.py) the
    # time from production to scored, as the service measures it, went from a mean of
    # ~110 ms with 50 to 60-80 ms, and the end-to-end p99 from 266 to 237 ms (same run); a
    # backlog fills max_records before either wait ends, so throughput does not change. The
    # price is paid at idle: the consumer's fetch waits as long (a longer fetch wait held
    # records back: mean 160-210 ms with 500), so an idle service used 12 % of a core instead
    # of 5 %, and the local broker 10 % instead of 7.5 %. Raise it where idle cost matters
    # more than latency.
    max_wait_ms: int = Field(default=20, ge=0)


class KafkaConfig(_Frozen):
    """Kafka connection; ``security`` takes kafka-python's option names (ssl_*, sasl_*),
    translated for librdkafka when the confluent producer is used."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topics: list[str] = Field(default_factory=list)
    pattern: str | None = None
    group_id: str = "streamgen"
    client_id: str = "streamgen"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security: dict[str, Any] = Field(default_factory=dict)
    # Output topics; None turns that output off.
    scores_topic: str | None = "streamgen.scores"
    continuations_topic: str | None = "streamgen.continuations"
    alerts_topic: str | None = "streamgen.alerts"
    dead_letter_topic: str | None = "streamgen.dlq"
    # The output producer's unacknowledged requests per broker connection
    # (max_in_flight_requests_per_connection / max.in.flight.requests.per.connection), capped
    # at 5, the most the idempotent producer keeps in order. (Formerly max_in_flight_batches,
    # still accepted: see _RENAMED.)
    max_in_flight_requests: int = Field(default=4, ge=1)
    reconnect_backoff_max_seconds: float = Field(default=30.0, gt=0.0)
    # Output producer client: confluent-kafka (librdkafka; `pip install 'streamgen[fast]'`)
    # when importable, else kafka-python. Same semantics either way; the consumer is always
    # kafka-python.
    producer: Literal["auto", "kafka-python", "confluent"] = "auto"


class CheckpointConfig(_Frozen):
    """Where and how often state is written. ``dir`` is a local folder or ``s3://bucket/prefix``
    (S3-compatible object storage, ``pip install 'streamgen[s3]'``); the ``s3_*`` fields set
    its endpoint, region and credentials (unset: boto3's defaults, e.g. ``AWS_*`` variables)
    and take ``env:NAME`` / ``file:/path`` like ``kafka.security`` (``streamgen/io/store.py``)."""

    dir: str | None = None
    interval_seconds: float = Field(default=10.0, gt=0.0)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    # One model for the consumer group (streamgen/merge.py): at each checkpoint a member
    # publishes what its model learned, the member owning the group's first partition merges
    # (federated averaging), and every member adopts the merged version. Off: each member
    # trains its own copy and the last one to write the model checkpoint wins.
    merge_models: bool = True
    # This member's name in the group (unique among the members; a pod or host name);
    # None: <hostname>-<process id>.
    member_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,128}$")
    # Contributions of members silent this long are deleted by the coordinator.
    merge_forget_seconds: float = Field(default=3600.0, gt=0.0)

    @model_validator(mode="after")
    def _s3_fields_need_s3_dir(self) -> CheckpointConfig:
        used = [n for n in ("s3_endpoint", "s3_region", "s3_access_key", "s3_secret_key")
                if getattr(self, n) is not None]
        if used and not (self.dir or "").startswith("s3://"):
            raise ValueError(f"{used[0]} is set but dir is not an s3://bucket/prefix URL")
        return self


class MetricsConfig(_Frozen):
    """Prometheus metrics and health endpoint (loopback by default)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    # The live status page at / and /status.json on the same port (streamgen/io/status.py):
    # the busiest and the most anomalous keys, status_keys of each, with their last
    # status_history points. false: / answers with the list of endpoints only.
    status_page: bool = True
    status_keys: int = Field(default=6, ge=1, le=50)
    status_history: int = Field(default=120, ge=8, le=2000)


class HealthConfig(_Frozen):
    """When the service reports itself unhealthy beyond losing its broker."""

    # No committed progress for this long while the consumer has lag: the service is stuck
    # (a sink that fails on every try, a loop that rewinds to the same record): /readyz
    # answers 503, streamgen_healthy is 0, and the log says why.
    stall_seconds: float = Field(default=300.0, gt=0.0)


class OutputConfig(_Frozen):
    """What goes into score rows and how often continuations are emitted."""

    continuations_every: int = Field(default=1, ge=1)


class PipelineConfig(_Frozen):
    """A whole pipeline. Every section has working defaults."""

    name: str = "streamgen"
    decode: DecodeConfig = DecodeConfig()
    window: WindowConfig = WindowConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    model: AnyModelConfig = Field(default_factory=lambda: settings_class(DEFAULT_MODEL)())
    calibrate: CalibrateConfig = CalibrateConfig()
    alerting: AlertConfig = AlertConfig()
    batch: BatchConfig = BatchConfig()
    kafka: KafkaConfig = KafkaConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    output: OutputConfig = OutputConfig()


def _format_error(exc: ValidationError, via_set: bool = False) -> str:
    """The first error as one line naming the field, with a hint where one helps: the
    closest valid name for an unknown setting, the expected syntax for a list or map
    field (``--set`` syntax when the value came from ``--set``, else YAML), the closest
    choice for a misspelled option."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    model_name = None
    if loc[:1] == ("model",) and len(loc) > 1 and loc[1] in MODEL_NAMES:
        model_name, loc = loc[1], loc[:1] + loc[2:]  # pydantic puts the union's tag in loc
    where = ".".join(loc) or "pipeline"
    kind = err["type"]
    if kind == "unknown_model":
        return unknown_model(_model_name(err.get("input")))
    if kind == "extra_forbidden":
        return _unknown_setting(where, list(loc), model_name)
    msg = err["msg"]
    if kind in ("list_type", "dict_type") and loc:
        msg += f", e.g. {_example(loc, kind == 'list_type', via_set)}"
    elif kind == "literal_error" and isinstance(err.get("input"), str):
        choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], choices, n=1, cutoff=0.6)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return f"{where}: {msg}"


# Examples of the list and map settings for error messages (others get a generic one).
_EXAMPLES: dict[tuple[str, ...], str] = {
    ("decode", "value_fields"): "[temp,humidity]",
    ("kafka", "topics"): "[sensors,events]",
    ("calibrate", "detectors"): "[model,shape]",
    ("calibrate", "fallback"): "[diff]",
    ("kafka", "security"): "{sasl_mechanism: PLAIN, sasl_plain_username: me}",
}


def _example(loc: tuple[str, ...], is_list: bool, via_set: bool) -> str:
    """``--set 'a.b=[x,y]'`` (or the YAML line ``b: [x, y]``) for the list or map ``loc``."""
    value = _EXAMPLES.get(loc, "[a,b]" if is_list else "{name: value}")
    if via_set:
        return f"--set '{'.'.join(loc)}={value}'"
    return f"{loc[-1]}: " + re.sub(r",(?=\S)", ", ", value)


def _section(
    model: type[BaseModel], name: str, model_name: str | None = None
) -> type[BaseModel] | None:
    """The section class of field ``name`` of ``model`` (None for a setting); for the
    ``model`` section, the settings class of model ``model_name`` (the default model's
    when None or unknown)."""
    if model is PipelineConfig and name == "model":
        return settings_class(model_name if model_name in MODEL_NAMES else DEFAULT_MODEL)
    ann = model.model_fields[name].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _owners(setting: str) -> list[str]:
    """The models that have the setting ``setting``."""
    return [n for n, cls in settings_classes().items() if setting in cls.model_fields]


def _is_map(model: type[BaseModel], name: str) -> bool:
    """Whether field ``name`` is a free-form mapping (``kafka.security``)."""
    ann = model.model_fields[name].annotation
    return any(get_origin(a) is dict or a is dict for a in (ann, *get_args(ann)))


def _unknown_setting(dotted: str, parts: list[str], model_name: str | None = None) -> str:
    """``dotted: unknown setting`` with the closest valid path (every misspelled level
    corrected), else the valid names at the first unknown level; a setting of another
    model than ``model_name`` says which model has it."""
    if len(parts) == 2 and parts[0] == "model":
        name = model_name if model_name in MODEL_NAMES else DEFAULT_MODEL
        owners = _owners(parts[1])
        if owners and name not in owners:
            return (f"{dotted}: not a setting of model {name!r} (a setting of "
                    f"{', '.join(owners)}: set model.name)")
    model: type[BaseModel] | None = PipelineConfig
    in_map = False  # inside a free-form map: any key
    fixed: list[str] = []
    first_bad: tuple[str, list[str]] | None = None
    for part in parts:
        if model is None:
            if not in_map:  # a path below a plain setting has no valid spelling
                break
            fixed.append(part)
            in_map = False
            continue
        names = list(model.model_fields)
        if part not in names:
            if first_bad is None:
                first_bad = (".".join(fixed), names)
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            if not close:
                break
            part = close[0]
        fixed.append(part)
        in_map = _is_map(model, part)
        model = _section(model, part, model_name)
    else:
        if first_bad is not None:
            return f"{dotted}: unknown setting (did you mean {'.'.join(fixed)}?)"
    if first_bad is None:
        return f"{dotted}: unknown setting"
    prefix, names = first_bad
    where = f"under {prefix}" if prefix else "at the top level"
    return f"{dotted}: unknown setting; valid {where}: {', '.join(sorted(names))}"


# Settings renamed since a release: (section, old name) -> new name. The old name is still
# accepted in pipeline files and --set, and means the new one.
_RENAMED: dict[tuple[str, str], str] = {
    ("kafka", "max_in_flight_batches"): "max_in_flight_requests",
}


def _renamed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with renamed settings under their current names (the current name wins)."""
    for (section, old), new in _RENAMED.items():
        sub = data.get(section)
        if isinstance(sub, dict) and old in sub:
            sub = dict(sub)
            value = sub.pop(old)
            sub.setdefault(new, value)
            data = {**data, section: sub}
    return data


def build_config(data: dict[str, Any] | None, via_set: bool = False) -> PipelineConfig:
    """Validate a plain mapping into a :class:`PipelineConfig` or raise ConfigError
    (``via_set``: the values came from ``--set``, and hints use its syntax)."""
    try:
        return PipelineConfig.model_validate(_renamed(data or {}))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, via_set)) from None


def load_pipeline(path: str | Path | None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a pipeline YAML file (or defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"pipeline: file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline: invalid YAML in {p}: {exc}".splitlines()[0]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"pipeline: top level of {p} must be a mapping")
        data = loaded or {}
    return apply_overrides(build_config(data), overrides or [])


def apply_overrides(cfg: PipelineConfig, overrides: list[str]) -> PipelineConfig:
    """Apply ``dotted.key=value`` strings (values parsed as YAML scalars; lists and maps
    in YAML flow syntax, ``[a,b]`` and ``{k: v}``; a free-form map such as
    ``kafka.security`` also takes ``kafka.security.KEY=value``)."""
    if not overrides:
        return cfg
    data = cfg.model_dump()
    # model.name decides which model settings exist, wherever it stands among the overrides.
    model_name = cfg.model.name
    for item in overrides:
        dotted, _, raw = item.partition("=")
        if dotted.strip() == "model.name":
            model_name = str(yaml.safe_load(raw) if raw.strip() else raw)
    if model_name not in MODEL_NAMES:
        raise ConfigError(unknown_model(model_name))
    set_in_model: set[str] = set()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: expected dotted.key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted:
            raise ConfigError(f"--set: expected dotted.key=value, got {item!r}")
        parts = dotted.split(".")
        if len(parts) == 2 and (parts[0], parts[1]) in _RENAMED:
            parts[1] = _RENAMED[parts[0], parts[1]]
        node = data
        model: type[BaseModel] | None = PipelineConfig
        for depth, part in enumerate(parts[:-1]):
            if model is None:  # a free-form map takes one more level: its keys
                raise ConfigError(
                    f"{dotted}: {'.'.join(parts[:depth])} takes KEY=value pairs, e.g. "
                    f"--set {'.'.join(parts[:depth])}.{part}=value"
                )
            if part not in model.model_fields:
                raise ConfigError(_unknown_setting(dotted, parts))
            sub = _section(model, part, model_name)
            if sub is None and not _is_map(model, part):
                raise ConfigError(
                    f"{dotted}: unknown setting ({'.'.join(parts[: depth + 1])} is a setting, "
                    f"not a section)"
                )
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, model = node[part], sub
        if model is not None and parts[-1] not in model.model_fields:
            raise ConfigError(_unknown_setting(dotted, parts, model_name))
        if len(parts) == 2 and parts[0] == "model":
            set_in_model.add(parts[1])
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[parts[-1]] = raw
    if model_name != cfg.model.name:  # the previous model's own settings go with it
        own = settings_class(model_name).model_fields
        data["model"] = {k: v for k, v in data["model"].items() if k in own or k in set_in_model}
    return build_config(data, via_set=True)
