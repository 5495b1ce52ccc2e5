"""The one loop: decode → windows → normalize → score → calibrate → alert → emit → learn.

:class:`Engine` processes micro-batches of raw messages. The same object serves live Kafka,
replays and ``streamgen score`` on a file; only the source and sinks differ.

Per record, in source order:

1. decode (bad → dead-letter sink with the reason; its score row keeps its place with an
   empty score and the reason in ``error``);
2. fold into the key's ring buffer (late records → dead letter ``late``);
3. if the key has a full window: normalize it with the key's statistics *before* this point
   and queue it for scoring; else compute a finite fallback score (|z| of the point).

Then one forward pass scores every queued window; each gets a raw score (a blend of the last
point's error, the window's mean error, and the error of the previous window's one-step
forecast for this point), a per-key calibrated score and an anomaly flag; alerts update;
rows go to the sinks; finally the model takes a training step on spans that contain no
flagged point (score before learn: no window is scored by a model that trained on it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streamgen.config import PipelineConfig
from streamgen.core.alerting import Alerter
from streamgen.core.calibrate import Calibrator
from streamgen.core.decode import Decoder
from streamgen.core.normalize import Normalizer
from streamgen.core.ports import Metrics, RawMessage, Sink
from streamgen.core.window import LatenessGate, LateRecord, WindowStore
from streamgen.models.online import OnlineLearner
from streamgen.records import DeadLetter, Record

SCORE_COLUMNS = [
    "key", "timestamp", "ts_ms", "score", "calibrated", "threshold", "is_anomaly", "warm",
    "error", "model", "step", "topic", "partition", "offset", "label",
]


def iso_ms(ts_ms: int) -> str:
    """Epoch ms → ISO-8601 UTC text with milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass
class Sinks:
    """Where each kind of output goes; ``None`` turns that output off."""

    scores: Sink | None = None
    continuations: Sink | None = None
    alerts: Sink | None = None
    dead_letters: Sink | None = None

    def all(self) -> list[Sink]:
        return [s for s in (self.scores, self.continuations, self.alerts, self.dead_letters) if s]


@dataclass
class BatchStats:
    records: int = 0
    dead_letters: int = 0
    windows: int = 0
    anomalies: int = 0
    loss: float = float("nan")
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    """Stateful micro-batch processor. Model and per-key state are built on the first record
    (the channel count is fixed then) or restored from a checkpoint."""

    def __init__(
        self, cfg: PipelineConfig, sinks: Sinks | None = None, metrics: Metrics | None = None
    ) -> None:
        self.cfg = cfg
        self.sinks = sinks or Sinks()
        self.metrics = metrics or Metrics()
        self.decoder = Decoder(cfg.decode)
        self.gate = (
            LatenessGate(cfg.window.allowed_lateness_ms)
            if cfg.window.late_policy == "reorder"
            else None
        )
        self.alerter = Alerter(cfg.alerting, cfg.calibrate.threshold)
        self.calibrator = Calibrator(cfg.calibrate)
        self.threshold = self.calibrator.threshold
        self.store: WindowStore | None = None
        self.normalizer: Normalizer | None = None
        self.learner: OnlineLearner | None = None
        # Per slot: the continuation (H, C) of the key's last scored window, in raw units, and
        # how many points arrived since it was made (point i after it uses forecast step i).
        self.prev_fc = np.zeros((0, 1, 1), np.float32)
        self.fc_age = np.zeros(0, np.int64)
        self.has_fc = np.zeros(0, bool)
        self.last_anom = np.zeros(0, bool)
        self.n_windows = np.zeros(0, np.int64)
        self.key_partition: dict[str, tuple[str, int]] = {}
        self.offsets: dict[tuple[str, int], int] = {}  # last offset folded into state
        self.records_total = 0

    # -- lazy build ------------------------------------------------------------------------
    @property
    def channels(self) -> list[str] | None:
        return self.decoder.channels

    def _build(self, n_channels: int) -> None:
        c = self.cfg
        self.store = WindowStore(
            n_channels, c.window.length, c.model.horizon, c.window.max_keys, c.window.idle_ttl_ms
        )
        self.normalizer = Normalizer(c.normalize, n_channels)
        if self.learner is None:
            self.learner = OnlineLearner(c.model, n_channels, c.window.length)
        self.prev_fc = np.zeros((0, c.model.horizon, n_channels), np.float32)
        self._ensure()

    def _ensure(self) -> None:
        assert self.store is not None and self.normalizer is not None
        n = self.store.n_slots
        self.normalizer.ensure(n)
        self.calibrator.ensure(n)
        pad = n - len(self.has_fc)
        if pad > 0:
            H, C = self.store.horizon, self.store.n_channels
            self.prev_fc = np.concatenate([self.prev_fc, np.zeros((pad, H, C), np.float32)])
            self.fc_age = np.concatenate([self.fc_age, np.zeros(pad, np.int64)])
            self.has_fc = np.concatenate([self.has_fc, np.zeros(pad, bool)])
            self.last_anom = np.concatenate([self.last_anom, np.zeros(pad, bool)])
            self.n_windows = np.concatenate([self.n_windows, np.zeros(pad, np.int64)])

    def _reset_slot(self, slot: int) -> None:
        assert self.normalizer is not None
        self.normalizer.reset(slot)
        self.calibrator.reset(slot)
        self.has_fc[slot] = False
        self.fc_age[slot] = 0
        self.last_anom[slot] = False
        self.n_windows[slot] = 0

    # -- the batch -------------------------------------------------------------------------
    def process(self, msgs: Sequence[RawMessage], now: float | None = None) -> BatchStats:
        """Process one micro-batch; every message yields exactly one score row."""
        t0 = time.perf_counter()
        st = BatchStats(records=len(msgs))
        rows: list[dict[str, Any]] = []
        records: list[tuple[int, Record]] = []
        for msg in msgs:
            out = self.decoder.decode(msg)
            if isinstance(out, DeadLetter):
                self._dead(out, rows, st)
                continue
            if self.gate is not None:
                released, late = self.gate.offer(out)
                if late is not None:
                    self._dead(_late(late), rows, st)
                for r in released:
                    records.append((len(rows), r))
                    rows.append({})
            else:
                records.append((len(rows), out))
                rows.append({})
        t1 = time.perf_counter()
        if records:
            self._score_and_learn(records, rows, st)
        self._emit(rows)
        st.timings.update(decode=t1 - t0, total=time.perf_counter() - t0)
        m = self.metrics
        m.batch(len(msgs), st.windows)
        for stage, secs in st.timings.items():
            m.stage_latency(stage, secs)
        if self.store is not None:
            m.keys_tracked(self.store.n_keys)
        m.alerts_firing(self.alerter.n_open)
        return st

    def flush_held(self) -> BatchStats:
        """End of a finite input: release records held by the reorder gate."""
        st = BatchStats()
        if self.gate is None:
            return st
        held = self.gate.flush()
        rows: list[dict[str, Any]] = [{} for _ in held]
        if held:
            self._score_and_learn(list(enumerate(held)), rows, st)
        self._emit(rows)
        return st

    def _dead(self, dl: DeadLetter, rows: list[dict[str, Any]], st: BatchStats) -> None:
        st.dead_letters += 1
        self.metrics.dead_lettered(1, dl.reason.split(" ")[0] if dl.reason else "unknown")
        if self.sinks.dead_letters is not None:
            self.sinks.dead_letters.add(dl.as_dict())
        pos = dl.position
        self.offsets[(pos.topic, pos.partition)] = max(
            pos.offset, self.offsets.get((pos.topic, pos.partition), -1)
        )
        rows.append({
            "key": dl.key, "timestamp": None if dl.ts_ms is None else iso_ms(dl.ts_ms),
            "ts_ms": dl.ts_ms, "score": None, "calibrated": None, "threshold": self.threshold,
            "is_anomaly": False, "warm": False, "error": dl.reason, "model": self.cfg.model.name,
            "step": self.learner.step if self.learner else 0, **pos.as_dict(), "label": None,
        })

    def _score_and_learn(
        self, records: list[tuple[int, Record]], rows: list[dict[str, Any]], st: BatchStats
    ) -> None:
        if self.store is None:
            self._build(len(records[0][1].values))
        store, norm, learner = self.store, self.normalizer, self.learner
        assert store is not None and norm is not None and learner is not None
        t0 = time.perf_counter()
        W, H = store.length, store.horizon
        stride = self.cfg.window.stride
        n = len(records)
        C = store.n_channels
        # Per-record snapshots, filled in the sequential fold below; the arithmetic on them
        # is vectorized afterwards (the per-record Python loop is the engine's hot path).
        rec_slot = np.full(n, -1, np.int64)
        rec_seq = np.zeros(n, np.int64)  # per-key sequence number within the batch
        values = np.empty((n, C), np.float64)
        mean_snap = np.empty((n, C), np.float64)  # key statistics before the point
        std_snap = np.empty((n, C), np.float64)
        fc_snap = np.zeros((n, C), np.float32)  # forecast made earlier for this point
        has_fc = np.zeros(n, bool)
        win_idx: list[int] = []  # records that end a scored window
        raw_windows: list[np.ndarray] = []
        span_idx: list[int] = []
        raw_spans: list[np.ndarray] = []
        span_mean: list[np.ndarray] = []
        span_std: list[np.ndarray] = []
        seq: dict[str, int] = {}
        # Training uses at most budget new spans per batch; sample that many (with margin
        # for spans dropped by protection) instead of copying a span for every record.
        mc = self.cfg.model
        budget = 2 * mc.max_steps_per_batch * max(1, int(mc.train_batch * (1 - mc.replay_fraction)))
        take_span = learner.rng.random(n) < min(1.0, budget / max(1, n))
        for i, (_, rec) in enumerate(records):
            pos = rec.position
            try:
                slot, is_new = store.append(rec.key, rec.ts_ms, rec.values)
            except LateRecord:
                rows[records[i][0]] = self._dead_row(_late(rec), st)
                continue
            if is_new:
                self._ensure()
                self._reset_slot(slot)
            self.key_partition[rec.key] = (pos.topic, pos.partition)
            rec_slot[i] = slot
            values[i] = rec.values
            mean_snap[i] = norm.mean[slot]
            std_snap[i] = sd = norm.std(slot)
            age = self.fc_age[slot] = self.fc_age[slot] + 1
            if self.has_fc[slot] and age <= H:
                has_fc[i] = True
                fc_snap[i] = self.prev_fc[slot, age - 1]
            if store.count[slot] >= W and store.since_emit[slot] >= stride:
                store.since_emit[slot] = 0
                raw_windows.append(store.window(slot))
                win_idx.append(i)
            norm.update(slot, rec.values, frozen=bool(self.last_anom[slot]))
            k = seq.get(rec.key, 0)
            seq[rec.key] = k + 1
            rec_seq[i] = k
            if take_span[i] and store.count[slot] >= W + H and not store.span_flagged(slot):
                raw_spans.append(store.span(slot))
                span_idx.append(i)
                span_mean.append(norm.mean[slot].copy())
                span_std.append(norm.std(slot))
            off = self.offsets.get((pos.topic, pos.partition), -1)
            if pos.offset > off:
                self.offsets[(pos.topic, pos.partition)] = pos.offset
        for key, _slot, reason in store.drain_evicted():
            self.metrics.keys_evicted(1, reason)
            ev = self.alerter.forget(key, int(store.last_ts.max()))
            if ev is not None and self.sinks.alerts is not None:
                self.sinks.alerts.add(ev.as_dict())
            self.key_partition.pop(key, None)
        t1 = time.perf_counter()
        clip = self.cfg.normalize.clip
        z_point = (values - mean_snap) / std_snap  # (n, C)
        in_window = np.zeros(n, bool)
        in_window[win_idx] = True
        # -- one forward pass for every ready window --------------------------------------
        flagged_seq: dict[str, list[int]] = {}
        if win_idx:
            wi = np.asarray(win_idx)
            m, sd = mean_snap[wi][:, None, :], std_snap[wi][:, None, :]
            windows = np.clip((np.stack(raw_windows) - m) / sd, -clip, clip).astype(np.float32)
            res = learner.score(windows)
            ps = res.point_score
            c = self.cfg.model
            fc_raw = res.forecast * sd + m
            # [models: in-batch forecasts] A window's key may have an earlier window in this
            # same batch: its continuation (same pass, same weights, made without seeing this
            # point, so still prequential) is the freshest forecast for this point. Without
            # it only the first H points of each key in a batch had a forecast at all.
            kid: dict[str, int] = {}  # keys, not slots: a slot can change hands mid-batch
            w_key = np.array([kid.setdefault(records[i][1].key, len(kid)) for i in win_idx])
            w_seq = rec_seq[wi]
            order = np.lexsort((w_seq, w_key))
            same = w_key[order[1:]] == w_key[order[:-1]]
            cur, prev = order[1:][same], order[:-1][same]
            age = w_seq[cur] - w_seq[prev]
            near = age <= H
            fc_snap[wi[cur[near]]] = fc_raw[prev[near], age[near] - 1]
            has_fc[wi[cur[near]]] = True
            # Error of the forecast made earlier for this point (same units as point_score:
            # mean over channels of squared z-error); the newest point's reconstruction
            # error stands in where no forecast exists yet.
            fe_z = (values[wi] - fc_snap[wi]) / std_snap[wi]
            fe = np.where(has_fc[wi], np.mean(np.minimum(fe_z**2, 1e6), axis=1), ps[:, -1])
            raw = c.score_last * ps[:, -1] + c.score_window * ps.mean(1) + c.score_forecast * fe
            raw = np.nan_to_num(raw, nan=1e6, posinf=1e6)
            spread = None if res.forecast_std is None else res.forecast_std * sd
            st.windows = len(win_idx)
            model_ok = learner.warm
            cal_list = []
            for j, i in enumerate(win_idx):
                row_idx, rec = records[i]
                slot = int(rec_slot[i])
                if store.keys[slot] != rec.key:
                    # The key was evicted later in this batch and its slot reused.
                    rows[row_idx] = self._row(rec, float(raw[j]), 0.0, False, False)
                    continue
                score = float(raw[j])
                if model_ok:
                    cal, cal_warm = self.calibrator.observe(slot, score)
                else:
                    # Scores of an untrained model say nothing about the key's normal error
                    # level: keep them out of the calibrator's statistics.
                    cal, cal_warm = self.calibrator.calibrate(slot, score), False
                warm = cal_warm and model_ok
                anom = bool(warm and cal >= self.threshold)
                later = int(seq[rec.key] - 1 - rec_seq[i])  # newer points of this key
                self.last_anom[slot] = anom
                self.prev_fc[slot] = fc_raw[j]
                self.fc_age[slot] = later
                self.has_fc[slot] = True
                self.n_windows[slot] += 1
                cal_list.append(cal)
                if anom:
                    st.anomalies += 1
                    store.flag_back(slot, later)
                    flagged_seq.setdefault(rec.key, []).append(int(rec_seq[i]))
                if warm and self.cfg.alerting.enabled:
                    ev = self.alerter.update(rec.key, rec.ts_ms, cal)
                    if ev is not None:
                        self.metrics.alert_event(ev.state)
                        if self.sinks.alerts is not None:
                            self.sinks.alerts.add(ev.as_dict())
                rows[row_idx] = self._row(rec, score, cal, anom, warm)
                if (
                    self.sinks.continuations is not None
                    and self.n_windows[slot] % self.cfg.output.continuations_every == 0
                ):
                    self.sinks.continuations.add(self._continuation(rec, fc_raw[j], spread, j))
            self.metrics.scores(c.name, cal_list)
            self.metrics.anomalies(c.name, st.anomalies)
            if has_fc[wi].any():
                err = np.sqrt(np.mean(fe_z[has_fc[wi]] ** 2, axis=1)).mean()
                self.metrics.forecast_error(c.name, float(err))
        # Records without a scored window: the point's squared z under the key's statistics.
        fallback = np.mean(np.minimum(z_point**2, 1e6), axis=1)
        for r in np.flatnonzero((rec_slot >= 0) & ~in_window).tolist():
            rows[records[r][0]] = self._row(records[r][1], float(fallback[r]), 0.0, False, False)
        t2 = time.perf_counter()
        # -- learn on spans with no flagged point ------------------------------------------
        keep = []
        for j, i in enumerate(span_idx):
            fl = flagged_seq.get(records[i][1].key)
            k = rec_seq[i]
            if not (fl and any(k - W - H < f <= k for f in fl)):
                keep.append(j)
        spans = np.zeros((0, W + H, C), np.float32)
        if keep:
            m = np.stack(span_mean)[keep][:, None, :]
            sd = np.stack(span_std)[keep][:, None, :]
            spans = np.clip((np.stack(raw_spans)[keep] - m) / sd, -clip, clip).astype(np.float32)
        if len(spans) or learner.replay_n:
            stats = learner.learn(spans)
            st.loss = stats["loss"]
            kl = stats["kl"]
            self.metrics.train_step(
                self.cfg.model.name, stats["loss"], None if kl != kl else kl,
                bool(stats["skipped"]),
            )
            if stats["rolled_back"]:
                self.metrics.rollback(self.cfg.model.name)
        self.records_total += len(records)
        last = max(r.ts_ms for _, r in records)
        self.metrics.last_event_timestamp(last / 1000.0)
        st.timings.update(window=t1 - t0, score=t2 - t1, learn=time.perf_counter() - t2)

    def _dead_row(self, dl: DeadLetter, st: BatchStats) -> dict[str, Any]:
        tmp: list[dict[str, Any]] = []
        self._dead(dl, tmp, st)
        return tmp[0]

    def _row(self, rec: Record, score: float, cal: float, anom: bool, warm: bool) -> dict:
        assert self.learner is not None
        return {
            "key": rec.key, "timestamp": iso_ms(rec.ts_ms), "ts_ms": rec.ts_ms,
            "score": score, "calibrated": cal, "threshold": self.threshold, "is_anomaly": anom,
            "warm": warm, "error": None, "model": self.cfg.model.name,
            "step": self.learner.step, **rec.position.as_dict(), "label": rec.label,
        }

    def _continuation(self, rec: Record, fc: np.ndarray, spread: np.ndarray | None, j: int):
        row: dict[str, Any] = {
            "key": rec.key, "ts": iso_ms(rec.ts_ms), "ts_ms": rec.ts_ms,
            "horizon": int(fc.shape[0]), "channels": self.channels,
            "forecast": np.round(fc, 6).tolist(), "model": self.cfg.model.name,
        }
        if spread is not None:
            row["spread"] = np.round(spread[j], 6).tolist()
        return row

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        sink = self.sinks.scores
        if sink is not None:
            for row in rows:
                sink.add(row)
            self.metrics.records_out(len(rows), "scores")

    # -- state -----------------------------------------------------------------------------
    def flush_sinks(self) -> None:
        for s in self.sinks.all():
            s.flush()


def _late(rec: Record) -> DeadLetter:
    import json

    raw = json.dumps({"key": rec.key, "ts_ms": rec.ts_ms, "values": rec.values.tolist()})
    return DeadLetter(
        raw=raw.encode(), position=rec.position, reason="late: older than the key's newest point",
        key=rec.key, ts_ms=rec.ts_ms,
    )
