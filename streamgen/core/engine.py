"""The one loop: decode → windows → normalize → score → calibrate → alert → emit → learn.

:class:`Engine` processes micro-batches of raw messages. The same object serves live Kafka,
replays and ``streamgen score`` on a file; only the source and sinks differ.

Per record, in source order:

1. decode (bad → dead-letter sink with the reason; its score row keeps its place with an
   empty score and the reason in ``error``);
2. fold into the key's ring buffer (late records → dead letter ``late``);
3. if the key has a full window: normalize it with the key's statistics *before* this point
   and queue it for scoring.

Steps 2-3 run as one batched fold (:meth:`WindowStore.fold`, :meth:`Normalizer.fold`): a
single Python pass assigns slots, then numpy gathers every window and span of the batch as it
stood at its record; only the normalizer's per-point recursion stays a Python loop.

Then one forward pass (in chunks) scores every queued window (the model's raw score: a blend
of the last point's error, the window's mean error, and the error of the previous window's
one-step forecast for this point), the per-key shape detector scores it too, and every
record, window or not, gets one fused score from the per-key calibrated detectors that have
evidence for it (:mod:`streamgen.core.fusion`: on one scale from a key's first point on), an
anomaly flag and alert updates; rows go to the sinks; finally the model takes a training step
on spans that contain no flagged point (score before learn: no window is scored by a model
that trained on it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from streamgen.config import PipelineConfig
from streamgen.core.alerting import Alerter
from streamgen.core.calibrate import Calibrator
from streamgen.core.decode import Decoder
from streamgen.core.fusion import Fusion
from streamgen.core.gate import LatenessGate
from streamgen.core.keyar import KeyAR
from streamgen.core.normalize import Normalizer
from streamgen.core.ports import Metrics, RawMessage, Sink
from streamgen.core.shape import KeyShape, default_spans
from streamgen.core.slots import NEVER, SlotState
from streamgen.core.window import BatchFold, WindowStore
from streamgen.errors import CheckpointError
from streamgen.models.layers import robust_input
from streamgen.models.online import OnlineLearner, ScoreResult
from streamgen.records import DeadLetter, Position, Record, reason_label

SCORE_COLUMNS = [
    "key", "timestamp", "ts_ms", "score", "calibrated", "threshold", "is_anomaly", "warm",
    "error", "model", "step", "topic", "partition", "offset", "label", "raw_score",
]


def iso_ms(ts_ms: int) -> str:
    """Epoch ms → ISO-8601 UTC text with milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


# Up to here (year 2223), ts_ms / 1000 as a float is exact to well under a microsecond, so
# iso_ms and numpy's datetime64 text agree to the millisecond; outside, iso_ms is used as is.
_ISO_FAST_MAX_MS = 8_000_000_000_000


def iso_ms_batch(ts_ms: np.ndarray) -> list[str]:
    """:func:`iso_ms` of many timestamps at once (one numpy call instead of one datetime
    per record)."""
    ts = np.asarray(ts_ms, np.int64)
    if len(ts) and 0 <= ts.min() and ts.max() < _ISO_FAST_MAX_MS:
        text = np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms")
        return [t + "+00:00" for t in text.tolist()]
    return [iso_ms(t) for t in ts.tolist()]


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


@dataclass
class _Batch:
    """One micro-batch after the fold: per record (batch order; late ones have ``fold.slot``
    -1), the key's statistics before (``mean``, ``std``) and after (``*_after``) the point,
    and the forecast made earlier for it (``fc_snap`` where ``has_fc``)."""

    fold: BatchFold
    ok: np.ndarray  # records folded (not late)
    keys: list[str]
    ts_ms: np.ndarray
    values: np.ndarray  # (n, C)
    key_id: np.ndarray
    rec_seq: np.ndarray  # per-key sequence number within the batch
    take_span: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_after: np.ndarray
    std_after: np.ndarray
    has_fc: np.ndarray
    fc_snap: np.ndarray  # (n, C)


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
        self.fusion = Fusion(cfg.calibrate, len(shape_spans(cfg)))
        self.calibrator: Calibrator = self.fusion.cals["model"]
        self.threshold = self.fusion.threshold
        self.store: WindowStore | None = None
        self.normalizer: Normalizer | None = None
        self.learner: OnlineLearner | None = None
        self.ar: KeyAR | None = None
        self.shape: KeyShape | None = None
        # The engine's own per-slot state (forecast carry-over, flag state, window counts);
        # sized for the channel count once it is known (_build).
        self.slots = SlotState(cfg.model.horizon, 1)
        self.key_partition: dict[str, tuple[str, int]] = {}
        self.offsets: dict[tuple[str, int], int] = {}  # last offset folded into state
        self.records_total = 0
        self._next_idle_check_ms = -(1 << 62)
        # Whether any detector (or fallback) reads the point's z or its first difference.
        self._point_detectors = bool(
            {"point", "diff"} & {*cfg.calibrate.detectors, *cfg.calibrate.fallback}
        )

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
        order = min(c.model.ar_order, c.window.length)
        if order:
            self.ar = KeyAR(order, c.model.horizon, c.model.ar_forget, c.model.ar_ridge)
        if "shape" in c.calibrate.detectors:
            self.shape = KeyShape(c.window.length, n_channels, c.calibrate.shape_dim,
                                  c.model.ar_forget, shape_spans(c), c.calibrate.shape_recent)
        self.slots = SlotState(c.model.horizon, n_channels)
        self._ensure()

    def _ensure(self) -> None:
        assert self.store is not None and self.normalizer is not None
        n = self.store.n_slots
        self.normalizer.ensure(n)
        self.fusion.ensure(n)
        if self.ar is not None:
            self.ar.ensure(n)
        if self.shape is not None:
            self.shape.ensure(n)
        self.slots.ensure(n)

    # -- the batch -------------------------------------------------------------------------
    def process(self, msgs: Sequence[RawMessage]) -> BatchStats:
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
                # A held record is state (checkpoints carry the gate), so the partition's
                # offset covers it now: a restart must not read it again, nor skip it.
                self._advance(out.position)
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
        self.metrics.dead_lettered(1, reason_label(dl.reason))
        if self.sinks.dead_letters is not None:
            self.sinks.dead_letters.add(dl.as_dict())
        self._advance(dl.position)
        rows.append({
            "key": dl.key, "timestamp": None if dl.ts_ms is None else iso_ms(dl.ts_ms),
            "ts_ms": dl.ts_ms, "score": None, "calibrated": None, "threshold": self.threshold,
            "is_anomaly": False, "warm": False, "error": dl.reason, "model": self.cfg.model.name,
            "step": self.learner.step if self.learner else 0, **dl.position.as_dict(),
            "label": None, "raw_score": None,
        })

    def _score_and_learn(
        self, records: list[tuple[int, Record]], rows: list[dict[str, Any]], st: BatchStats
    ) -> None:
        if self.store is None:
            self._build(len(records[0][1].values))
        store, learner = self.store, self.learner
        assert store is not None and learner is not None
        t0 = time.perf_counter()
        b = self._fold(records, rows, st)
        fold = b.fold
        t1 = time.perf_counter()
        iso = iso_ms_batch(b.ts_ms)
        flagged: list[int] = []  # batch indices of the records flagged anomalous
        wi = np.flatnonzero(fold.ready)
        # Per record, the raw score of each of fusion.names (NaN: not available).
        raws = np.full((len(records), len(self.fusion.names)), np.nan)
        fc_raw: np.ndarray | None = None
        spread: np.ndarray | None = None
        if len(wi):
            m_raw, f_raw, s_raw, fc_raw, spread = self._score(b, wi, st)
            raws[wi, 0], raws[wi, 1] = m_raw, f_raw
            raws[wi[:, None], self.fusion.shape_from + np.arange(s_raw.shape[1])] = s_raw
        if self._point_detectors:
            raws[:, 2], raws[:, 3] = self._point_scores(b)
        self._judge(records, rows, iso, b, wi, raws, fc_raw, spread, flagged, st)
        t2 = time.perf_counter()
        self._learn(b, flagged, st)
        self.records_total += len(records)
        self.metrics.last_event_timestamp(int(b.ts_ms.max()) / 1000.0)
        st.timings.update(window=t1 - t0, score=t2 - t1, learn=time.perf_counter() - t2)

    def _fold(
        self, records: list[tuple[int, Record]], rows: list[dict[str, Any]], st: BatchStats
    ) -> _Batch:
        """Fold the batch into the windows and the normalizer; every per-key quantity is
        taken as of each record's arrival (:class:`BatchFold` keeps each key's earlier ring
        next to its new points; the normalizer returns the statistics before and after each
        point)."""
        store, norm, learner = self.store, self.normalizer, self.learner
        assert store is not None and norm is not None and learner is not None
        H, C = store.horizon, store.n_channels
        n = len(records)
        recs = [r for _, r in records]
        keys = [r.key for r in recs]
        ts_ms = np.array([r.ts_ms for r in recs], np.int64)
        values = np.array([r.values for r in recs], np.float64).reshape(n, C)
        # Training uses at most budget new spans per batch; sample that many (with margin
        # for spans dropped by protection) instead of copying a span for every record.
        mc = self.cfg.model
        budget = 2 * mc.max_steps_per_batch * max(1, int(mc.train_batch * (1 - mc.replay_fraction)))
        take_span = learner.rng.random(n) < min(1.0, budget / max(1, n))
        ttl = self.cfg.window.idle_ttl_ms
        if ttl and len(ts_ms):
            # Keys silent for idle_ttl_ms of event time are evicted (drained below, like
            # capacity evictions); one pass over the keys costs O(keys), so it runs at most
            # every quarter of the TTL of event time.
            now = int(ts_ms.max())
            if now >= self._next_idle_check_ms:
                store.evict_idle(now)
                self._next_idle_check_ms = now + max(1, ttl // 4)
        fold = store.fold(keys, ts_ms.tolist(), values, self.cfg.window.stride)
        self._ensure()
        ok = np.flatnonzero(fold.slot >= 0)
        for i in np.flatnonzero(fold.slot < 0).tolist():
            rows[records[i][0]] = self._dead_row(_late(recs[i]), st)
        sslot, fresh, live = fold.seg_slot, fold.seg_fresh, np.flatnonzero(fold.seg_alive)
        carried = ~fresh
        ss = self.slots
        # Per segment, the key's state before the batch (none for a key new to the store).
        frozen = carried & ss.last_anom[sslot]
        seg_has_fc = carried & ss.has_fc[sslot]
        seg_fc_age = np.where(carried, ss.fc_age[sslot], 0)
        stats = norm.fold(sslot, fresh, frozen, live, fold.seg_len, values[fold.order])
        # Mean and std before each point, then after it, back in batch order (late: 0 and 1).
        mean, std, mean_after, std_after = (
            _scatter(s, fold.order, n, float(k % 2)) for k, s in enumerate(stats)
        )
        # The forecast made earlier for each point, if the key's last one reaches it.
        seg, pos = fold.seg[ok], fold.pos[ok]
        age = seg_fc_age[seg] + pos + 1
        near = seg_has_fc[seg] & (age <= H)
        has_fc = np.zeros(n, bool)
        has_fc[ok[near]] = True
        fc_snap = np.zeros((n, C), np.float32)
        fc_snap[ok[near]] = ss.prev_fc[fold.slot[ok[near]], age[near] - 1]
        # Slot state after the fold; a key new to the store starts from nothing.
        lslot, lfresh = sslot[live], fresh[live]
        new_slots = lslot[lfresh]
        # (The detectors' calibrators of a new key are reset at its first record, in _judge:
        # records of a key evicted earlier in this batch are still judged on that slot's
        # statistics, as they would be one batch at a time.)
        if self.ar is not None:
            self.ar.reset(new_slots)
        if self.shape is not None:
            self.shape.reset(new_slots)
        ss.reset(new_slots)
        ss.fc_age[lslot] = seg_fc_age[live] + fold.seg_len[live]
        # Per key (not slot: a slot can change hands mid-batch) sequence within the batch.
        kid: dict[str, int] = {}
        key_id = np.array([kid.setdefault(k, len(kid)) for k in keys], np.int64)
        rec_seq = np.zeros(n, np.int64)
        rec_seq[ok] = _rank_in_group(key_id[ok])
        kp = self.key_partition
        for i in ok.tolist():
            kp[keys[i]] = self._advance(recs[i].position)
        for key, _slot, reason in store.drain_evicted():
            self.metrics.keys_evicted(1, reason)
            ev = self.alerter.forget(key, int(store.last_ts.max()))
            if ev is not None and self.sinks.alerts is not None:
                self.sinks.alerts.add(ev.as_dict())
            if key not in store.slots:  # it may have come back later in the batch
                self.key_partition.pop(key, None)
        return _Batch(fold, ok, keys, ts_ms, values, key_id, rec_seq, take_span, mean, std,
                      mean_after, std_after, has_fc, fc_snap)

    def _score(
        self, b: _Batch, wi: np.ndarray, st: BatchStats
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """One forward pass (in chunks) for every ready window ``wi``: the model's raw score
        of each, the error of the forecast made earlier for its last point (NaN where none
        was), its shape score per scale ``(len(wi), S)`` (NaN before the key has enough
        windows; no columns without the shape detector), its continuation
        ``(len(wi), H, C)`` in raw units and their spread."""
        assert self.learner is not None
        c = self.cfg.model
        H, clip = c.horizon, self.cfg.normalize.clip
        m, sd = b.mean[wi][:, None, :], b.std[wi][:, None, :]
        windows = np.clip((b.fold.windows(wi) - m) / sd, -clip, clip).astype(np.float32)
        res = self.learner.score(windows)
        shape = (np.full((len(wi), 0), np.nan) if self.shape is None
                 else self.shape.score(b.fold.slot[wi], windows))
        ps = res.point_score
        fc_raw = self._continuation(b.fold.slot[wi], windows, res) * sd + m
        # [models: in-batch forecasts] A window's key may have an earlier window in this
        # same batch: its continuation (same pass, same weights, made without seeing this
        # point, so still prequential) is the freshest forecast for this point. Without
        # it only the first H points of each key in a batch had a forecast at all.
        fc_snap, has_fc = b.fc_snap, b.has_fc
        w_key = b.key_id[wi]
        w_seq = b.rec_seq[wi]
        w_order = np.lexsort((w_seq, w_key))
        same = w_key[w_order[1:]] == w_key[w_order[:-1]]
        cur, prev = w_order[1:][same], w_order[:-1][same]
        gap = w_seq[cur] - w_seq[prev]
        close = gap <= H
        fc_snap[wi[cur[close]]] = fc_raw[prev[close], gap[close] - 1]
        has_fc[wi[cur[close]]] = True
        # Error of the forecast made earlier for this point (same units as point_score:
        # mean over channels of squared z-error); the newest point's reconstruction
        # error stands in where no forecast exists yet.
        fe_z = (b.values[wi] - fc_snap[wi]) / b.std[wi]
        fe = np.where(has_fc[wi], np.mean(np.minimum(fe_z**2, 1e6), axis=1), ps[:, -1])
        raw = c.score_last * ps[:, -1] + c.score_window * ps.mean(1) + c.score_forecast * fe
        raw = np.nan_to_num(raw, nan=1e6, posinf=1e6)
        st.windows = len(wi)
        if self.ar is not None:  # the spread of the fit that made the continuation
            spread = self.ar.spread(b.fold.slot[wi])[:, :, None] * sd
        else:
            spread = None if res.forecast_std is None else res.forecast_std * sd
        if has_fc[wi].any():
            err = np.sqrt(np.mean(fe_z[has_fc[wi]] ** 2, axis=1)).mean()
            self.metrics.forecast_error(c.name, float(err))
        return raw, np.where(has_fc[wi], fe, np.nan), shape, fc_raw, spread

    def _point_scores(self, b: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per record, the point's squared z under its key's statistics before it, and its
        squared first difference in the same units (NaN for a key's first point), each
        clipped like the model's inputs and averaged over channels."""
        nc = self.cfg.normalize
        fold, ok = b.fold, b.ok
        n = len(b.values)
        point, diff = np.full(n, np.nan), np.full(n, np.nan)
        std = b.std[ok]
        live = std > nc.min_std
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(live, (b.values[ok] - b.mean[ok]) / std, 0.0)
        point[ok] = np.mean(np.clip(z, -nc.clip, nc.clip) ** 2, axis=1)
        has_prev = fold.count[ok] >= 2
        prev_rows = np.where(has_prev, fold.row[ok] - 1, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dz = np.where(live, (b.values[ok] - fold.ext[prev_rows]) / std, 0.0)
        d = np.mean(np.clip(dz, -nc.clip, nc.clip) ** 2, axis=1)
        diff[ok] = np.where(has_prev, d, np.nan)
        return point, diff

    def _continuation(
        self, slots: np.ndarray, windows: np.ndarray, res: ScoreResult
    ) -> np.ndarray:
        """Continuations ``(B, H, C)`` of scored windows, normalized: the key's
        autoregression's (:mod:`streamgen.core.keyar`), else the model's. The autoregression
        reads each window as the model's forecast head does: every point pulled to within
        ``robust_limit`` of its reconstruction, so that a spike does not echo through the
        forecasts after it."""
        if self.ar is None:
            return res.forecast
        lim = self.cfg.model.robust_limit
        lags = windows
        if lim and res.recon is not None:
            x, r = torch.from_numpy(windows), torch.from_numpy(res.recon)
            lags = robust_input(x, r, lim).numpy()
        return self.ar.forecast(slots, lags)

    def _learn(self, b: _Batch, flagged: list[int], st: BatchStats) -> None:
        """Fold every new span that holds no flagged point into its key's autoregression;
        a training step of the model on the sampled ones."""
        store, learner = self.store, self.learner
        assert store is not None and learner is not None
        W, H, C = store.length, store.horizon, store.n_channels
        fold, ok = b.fold, b.ok
        # The per-key fits take every clean span; they learn with the model (not when its
        # learning is off), which takes the sampled ones.
        fit = (self.ar is not None or self.shape is not None) and (
            self.cfg.model.max_steps_per_batch > 0
        )
        cand = ok[fold.count[ok] >= W + H]
        if not fit:
            cand = cand[b.take_span[cand]]
        span_idx = cand[~fold.span_flagged(cand)]
        if flagged:
            # Drop spans that hold a point flagged in this batch: of the same key, at most
            # W + H - 1 records earlier. Codes key * M + sequence (M > n + W + H) keep each
            # key's range apart, so one sorted array answers every span by bisection.
            M = len(b.keys) + W + H + 1
            fi = np.asarray(flagged, np.int64)
            codes = np.sort(b.key_id[fi] * M + b.rec_seq[fi])
            top = b.key_id[span_idx] * M + b.rec_seq[span_idx]
            hits = np.searchsorted(codes, top, "right") - np.searchsorted(codes, top - W - H, "right")
            span_idx = span_idx[hits == 0]
        spans = np.zeros((0, W + H, C), np.float32)
        if len(span_idx):
            clip = self.cfg.normalize.clip
            m, sd = b.mean_after[span_idx][:, None, :], b.std_after[span_idx][:, None, :]
            spans = np.clip((fold.spans(span_idx) - m) / sd, -clip, clip).astype(np.float32)
        if fit:
            # A key evicted later in the batch gave its slot to another: skip its spans.
            alive = fold.seg_alive[fold.seg[span_idx]]
            if self.ar is not None:
                self.ar.update(fold.slot[span_idx[alive]], spans[alive])
            if self.shape is not None:
                self.shape.update(fold.slot[span_idx[alive]], spans[alive, :W])
            sampled = b.take_span[span_idx]
            span_idx, spans = span_idx[sampled], spans[sampled]
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

    def _judge(
        self, records: list[tuple[int, Record]], rows: list[dict[str, Any]], iso: list[str],
        b: _Batch, wi: np.ndarray, raws: np.ndarray, fc_raw: np.ndarray | None,
        spread: np.ndarray | None, flagged: list[int], st: BatchStats,
    ) -> None:
        """Fuse and calibrate every folded record's evidence in batch order (the model's
        where its window was scored and the model is trained), flag, alert, and fill its
        row; emit the continuation of each scored window."""
        store, fold = self.store, b.fold
        assert store is not None and self.learner is not None
        c = self.cfg.model
        ok = b.ok
        seg = fold.seg[ok]
        alive = fold.seg_alive[seg]
        slots = fold.slot[ok]
        later = (fold.seg_len[seg] - 1 - fold.pos[ok]).tolist()  # newer points of the key
        # A key new to the store starts its detectors' statistics at its first record.
        starts = (fold.seg_fresh[seg] & (fold.pos[ok] == 0)).tolist()
        # Per scored window: its index among wi, and the key's window count after it.
        w_of = np.full(len(records), -1, np.int64)
        w_of[wi] = np.arange(len(wi))
        ss = self.slots
        nw = (ss.n_windows[fold.slot[wi]] + _rank_in_group(fold.seg[wi]) + 1).tolist()
        conts = self.sinks.continuations
        every = self.cfg.output.continuations_every
        # As lists once per batch: one numpy call per row would cost more than the row.
        emit_fc = conts is not None and fc_raw is not None
        fc_list = np.round(fc_raw, 6).tolist() if emit_fc and fc_raw is not None else []
        spread_list = None if spread is None or not emit_fc else np.round(spread, 6).tolist()
        horizon = c.horizon
        model_ok = self.learner.warm
        # Model evidence only from a trained model: scores of an untrained one say nothing
        # about the key's normal error level.
        r_ok = raws[ok]
        if not model_ok:
            r_ok[:, 0] = np.nan
        raw_rows = [[None if v != v else v for v in r] for r in r_ok.tolist()]
        fusion = self.fusion
        judge = fusion.judge
        W = store.length
        n_base = self.fusion.shape_from
        warmup = self.cfg.calibrate.warmup_windows
        alerting = self.cfg.alerting.enabled
        anom_rec = np.zeros(len(ok), bool)
        cal_list = []
        # The batch's slots work on local indices (Fusion.begin): Python lists, not numpy
        # elements, in this loop.
        uniq, local = fusion.begin(slots)
        model_count = self.calibrator.count
        since = ss.since_flag[uniq].tolist()
        try:
            for j, (i, slot, loc, live) in enumerate(zip(ok.tolist(), slots.tolist(),
                                                         local.tolist(), alive.tolist(),
                                                         strict=True)):
                row_idx, rec = records[i]
                rr = raw_rows[j]
                mr = rr[0]
                if starts[j]:
                    fusion.reset(loc)
                gap = since[loc] if live else NEVER
                # While a flagged point is still in the window, the shape detector ranks
                # but does not flag: its distance then mostly says that the window holds
                # the anomaly already flagged (it kept flagging for a window's length after
                # every anomaly: 5 % of the normal points of the quick-start stream, 0.14 %
                # since).
                score, alert, anom, _ = judge(loc, rr, n_base if gap < W else None)
                if live:
                    since[loc] = 0 if anom else gap + 1
                warm = mr is not None and model_count[loc] >= warmup
                cal_list.append(score)
                if not live:
                    # The key was evicted later in this batch and its slot reused: its row
                    # stands, but it leaves no flag in the slot's new owner.
                    rows[row_idx] = self._row(rec, iso[i], score, score, anom, warm, mr)
                    continue
                if anom:
                    anom_rec[j] = True
                    st.anomalies += 1
                    store.flag_back(slot, later[j])
                    flagged.append(i)
                if alerting:
                    ev = self.alerter.update(rec.key, rec.ts_ms, alert)
                    if ev is not None:
                        self.metrics.alert_event(ev.state)
                        if self.sinks.alerts is not None:
                            self.sinks.alerts.add(ev.as_dict())
                rows[row_idx] = self._row(rec, iso[i], score, score, anom, warm, mr)
                w = int(w_of[i])
                if w >= 0 and emit_fc and conts is not None and nw[w] % every == 0:
                    cont = {
                        "key": rec.key, "ts": iso[i], "ts_ms": rec.ts_ms,
                        "horizon": horizon, "channels": self.channels,
                        "forecast": fc_list[w], "model": c.name,
                    }
                    if spread_list is not None:
                        cont["spread"] = spread_list[w]
                    conts.add(cont)
        finally:
            fusion.end()
        ss.since_flag[uniq] = since
        # Each live key's newest record sets its flag state for the next batch; its newest
        # scored window sets the forecast state.
        lk = np.flatnonzero(alive)
        if len(lk):
            _, back = np.unique(seg[lk][::-1], return_index=True)
            last = lk[len(lk) - 1 - back]
            ss.last_anom[slots[last]] = anom_rec[last]
        if len(wi) and fc_raw is not None:
            w_seg = fold.seg[wi]
            lw = np.flatnonzero(fold.seg_alive[w_seg])
            if len(lw):
                _, back = np.unique(w_seg[lw][::-1], return_index=True)
                last = lw[len(lw) - 1 - back]
                ls = fold.slot[wi][last]
                ss.prev_fc[ls] = fc_raw[last]
                ss.fc_age[ls] = (fold.seg_len[w_seg] - 1 - fold.pos[wi])[last]
                ss.has_fc[ls] = True
                np.add.at(ss.n_windows, fold.slot[wi][lw], 1)
        self.metrics.scores(c.name, cal_list)
        self.metrics.anomalies(c.name, st.anomalies)

    def _advance(self, pos: Position) -> tuple[str, int]:
        """Move the partition's offset up to ``pos`` (a record taken into state); returns
        the partition."""
        tp = (pos.topic, pos.partition)
        if pos.offset > self.offsets.get(tp, -1):
            self.offsets[tp] = pos.offset
        return tp

    def _dead_row(self, dl: DeadLetter, st: BatchStats) -> dict[str, Any]:
        tmp: list[dict[str, Any]] = []
        self._dead(dl, tmp, st)
        return tmp[0]

    def _row(
        self, rec: Record, ts_text: str, score: float, cal: float, anom: bool, warm: bool,
        raw: float | None = None,
    ) -> dict[str, Any]:
        assert self.learner is not None
        pos = rec.position
        return {
            "key": rec.key, "timestamp": ts_text, "ts_ms": rec.ts_ms,
            "score": score, "calibrated": cal, "threshold": self.threshold, "is_anomaly": anom,
            "warm": warm, "error": None, "model": self.cfg.model.name,
            "step": self.learner.step, "topic": pos.topic, "partition": pos.partition,
            "offset": pos.offset, "label": rec.label, "raw_score": raw,
        }

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        sink = self.sinks.scores
        if sink is not None:
            for row in rows:
                sink.add(row)
            self.metrics.records_out(len(rows), "scores")

    # -- state -----------------------------------------------------------------------------
    # The partition-state API: what a checkpoint saves and restores, and what leaves with a
    # revoked partition. ``streamgen.core.checkpoint`` (the file format) and the service use
    # only these methods. The dicts are the checkpoint's layout: plain tensors, numbers,
    # strings, lists and dicts (``torch.load(weights_only=True)`` reads them back).
    def flush_sinks(self) -> None:
        for s in self.sinks.all():
            s.flush()

    @property
    def has_model(self) -> bool:
        """The model exists (built on the first record or restored)."""
        return self.learner is not None

    @property
    def step(self) -> int:
        """The learner's optimizer step (0 before the model exists)."""
        return self.learner.step if self.learner is not None else 0

    @property
    def alerts_open(self) -> int:
        return self.alerter.n_open

    def use_channels(self, channels: list[str], what: str = "checkpoint channels") -> None:
        """Fix the input channels (from a checkpoint); raises CheckpointError if the
        pipeline's differ."""
        channels = list(channels)
        if self.channels is not None and list(self.channels) != channels:
            raise CheckpointError(f"{what} {channels} differ from the pipeline's {self.channels}")
        self.decoder.channels = channels

    def export_model(self) -> dict[str, Any]:
        """Model, optimizer and everything shared across keys."""
        assert self.learner is not None, "no model yet: nothing was processed or restored"
        return {
            "config": self.cfg.model_dump(mode="json"),
            "channels": list(self.channels or []),
            "learner": self.learner.state_dict(),
            "records_total": self.records_total,
        }

    def import_model(self, state: dict[str, Any]) -> None:
        """Restore :meth:`export_model` output; builds the engine for its channels."""
        self.use_channels(state["channels"])
        if self.store is None:
            self._build(len(self.decoder.channels or []))
        assert self.learner is not None
        self.learner.load_state_dict(state["learner"])
        self.records_total = int(state.get("records_total", 0))

    def model_weights(self) -> dict[str, torch.Tensor]:
        """The model's parameters and buffers (CPU copies): what the members of a consumer
        group merge (:mod:`streamgen.merge`). Empty before the model exists."""
        if self.learner is None:
            return {}
        return {k: v.detach().to("cpu").clone() for k, v in self.learner.model.state_dict().items()}

    def load_model_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Replace the model's weights (in place: the optimizer's views of them stay valid);
        the optimizer state and everything else stay."""
        assert self.learner is not None, "no model yet: nothing was processed or restored"
        self.learner.model.load_state_dict(weights)

    def export_keys(self, keys: list[str] | None = None) -> dict[str, Any] | None:
        """Per-key state of ``keys`` (all when None): windows, normalizers, calibrators,
        detectors, forecast and flag state, alerts, and each key's partition. None before
        the engine is built (no key yet)."""
        store, norm = self.store, self.normalizer
        if store is None or norm is None:
            return None
        ws = store.state_dict(keys)
        slots = np.array([store.slots[k] for k in ws["keys"]], dtype=np.int64)
        return {
            "windows": ws,
            "normalizer": norm.state_dict(slots),
            "calibrator": self.calibrator.state_dict(slots),
            "fusion": self.fusion.state_dict(slots),
            **self.slots.state_dict(slots),
            "ar": None if self.ar is None else self.ar.state_dict(slots),
            "shape": None if self.shape is None else self.shape.state_dict(slots),
            "alerts": self.alerter.state_dict(ws["keys"]),
            "key_partition": {k: list(self.key_partition.get(k, ("", -1))) for k in ws["keys"]},
        }

    def import_keys(self, state: dict[str, Any], channels: list[str] | None = None) -> None:
        """Merge :meth:`export_keys` output into the engine (a partition assigned, a resumed
        file run); builds the engine for ``channels`` (else its own) if needed."""
        if channels is not None:
            self.use_channels(channels, "channels")
        if self.store is None:
            if self.channels is None:
                raise CheckpointError("per-key state without its channels")
            self._build(len(self.channels))
        store, norm = self.store, self.normalizer
        assert store is not None and norm is not None
        slots = store.load_state_dict(state["windows"])
        self._ensure()
        norm.load_state_dict(state["normalizer"], slots)
        self.calibrator.load_state_dict(state["calibrator"], slots)
        self.fusion.load_state_dict(state.get("fusion"), slots)
        if self.ar is not None and state.get("ar") is not None:
            self.ar.load_state_dict(state["ar"], slots)
        if self.shape is not None:
            self.shape.load_state_dict(state.get("shape"), slots)
        self.slots.load_state_dict(state, np.asarray(slots, np.int64))
        self.alerter.load_state_dict(state["alerts"])
        for k, (topic, part) in state["key_partition"].items():
            self.key_partition[k] = (topic, int(part))

    def drop_keys(self, keys: list[str]) -> None:
        """Forget ``keys`` (their partition went to another member, which continues their
        windows and open alerts from its checkpoint: no alert is resolved here)."""
        if self.store is not None:
            self.store.remove(keys)
        for k in keys:
            self.alerter.forget(k, 0)
            self.key_partition.pop(k, None)

    def partition_keys(self, tps: Sequence[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
        """The keys of each partition of ``tps`` (the partition of a key's newest record)."""
        out: dict[tuple[str, int], list[str]] = {tp: [] for tp in tps}
        for key, tp in self.key_partition.items():
            if tp in out:
                out[tp].append(key)
        return out

    def drop_partitions(self, tps: Sequence[tuple[str, int]]) -> None:
        """Forget everything of ``tps``: their keys, the records the reorder gate holds from
        them, and their offsets."""
        gone = set(tps)
        self.drop_keys([k for k, tp in self.key_partition.items() if tp in gone])
        if self.gate is not None:
            self.gate.remove(list(tps))  # held records belong to the partition's next owner
        for tp in tps:
            self.offsets.pop(tp, None)

    def export_held(self, tps: list[tuple[str, int]] | None = None) -> dict[str, Any] | None:
        """Records the reorder gate holds from partitions ``tps`` (all when None); None
        without a gate."""
        return None if self.gate is None else self.gate.state_dict(tps)

    def import_held(self, state: dict[str, Any] | None) -> int:
        """Hold the records of :meth:`export_held` again; returns how many."""
        if not state or not state["key"]:
            return 0
        if self.gate is None:
            # The pipeline stopped reordering since the checkpoint. A gate without lateness
            # holds these until their key's next record and then acts as late_policy=drop.
            self.gate = LatenessGate(0)
        return self.gate.load_state_dict(state)

    def full_state(self) -> dict[str, Any]:
        """Everything: model, every key, held records, offsets (``score --checkpoint-out``;
        :func:`streamgen.core.checkpoint.full_state` adds the format)."""
        return {
            **self.export_model(),
            "keys": self.export_keys(),
            "held": self.export_held(),
            "offsets": [[t, p, o] for (t, p), o in self.offsets.items()],
        }

    def load_full_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`full_state` output (``score --checkpoint-in``)."""
        self.import_model(state)
        if state.get("keys") is not None:
            self.import_keys(state["keys"])
        self.import_held(state.get("held"))
        for t, p, o in state.get("offsets", []):
            self.offsets[(t, int(p))] = int(o)


def shape_spans(cfg: PipelineConfig) -> tuple[int, ...]:
    """The shape detector's scales: spans of the window (``calibrate.shape_scales``)."""
    c = cfg.calibrate
    return default_spans(cfg.window.length, c.shape_dim, c.shape_scales)


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Each element's position among the elements of its group (``group``: small ints) that
    come before it."""
    order = np.argsort(group, kind="stable")
    cnt = np.bincount(group)
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return rank


def _scatter(rows: np.ndarray, order: np.ndarray, n: int, fill: float) -> np.ndarray:
    """``rows`` (one per index of ``order``) placed at ``order`` in an ``(n, C)`` array."""
    out = np.full((n, rows.shape[1]), fill)
    out[order] = rows
    return out


def _late(rec: Record) -> DeadLetter:
    import json

    raw = json.dumps({"key": rec.key, "ts_ms": rec.ts_ms, "values": rec.values.tolist()})
    return DeadLetter(
        raw=raw.encode(), position=rec.position, reason="late: older than the key's newest point",
        key=rec.key, ts_ms=rec.ts_ms,
    )
