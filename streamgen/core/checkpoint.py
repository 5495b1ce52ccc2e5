"""Snapshots of engine state: model + optimizer, per-key state, and source offsets.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts written with
``torch.save`` and read back with ``torch.load(..., weights_only=True)``: loading never
unpickles arbitrary objects. Writes are atomic (temp file in the same directory, fsync,
``os.replace``), so a crash or a full disk during a write leaves the previous checkpoint intact.

Layout for a live consumer (``checkpoint.dir``)::

    model.pt                        model, optimizer, step, replay buffer (shared by all keys)
    partitions/<topic>-<p>.pt       keys of that partition: windows, normalizers, calibrators,
                                    alert state, records held by the reorder gate, and the
                                    offset of the last record taken into that state

For ``streamgen score --checkpoint-out FILE`` everything goes into one file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streamgen.errors import CheckpointError

if TYPE_CHECKING:
    from streamgen.core.engine import Engine

# 2: partition files (and full states) carry the records held by the reorder gate ("held").
# Format 1 files still load (they hold none); a reader that only knows 1 refuses format 2, which
# it would otherwise read while silently dropping the held records.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically; raise CheckpointError on any failure."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(obj, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {p}: {exc.strerror or exc}") from exc


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (weights-only, no arbitrary code)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        # torch's own text can advise loading with weights_only=False (running code from the
        # file) or say "[Errno 22] Invalid argument" for a truncated one: name the fault.
        raise CheckpointError(
            f"cannot read checkpoint {p}: not a complete checkpoint written by streamgen "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{p}: not a streamgen checkpoint (format {FORMAT_VERSION})")
    if obj["format"] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{p}: checkpoint format {obj['format']!r} is not readable by this version "
            f"(reads {', '.join(map(str, READABLE_FORMATS))}); was it written by a newer one?"
        )
    return obj


def model_state(engine: Engine) -> dict[str, Any]:
    """Model, optimizer and everything shared across keys."""
    assert engine.learner is not None
    return {
        "format": FORMAT_VERSION,
        "kind": "model",
        "config": engine.cfg.model_dump(mode="json"),
        "channels": list(engine.channels or []),
        "learner": engine.learner.state_dict(),
        "records_total": engine.records_total,
    }


def keys_state(engine: Engine, keys: list[str] | None = None) -> dict[str, Any]:
    """Per-key state of ``keys`` (all when None)."""
    store, norm = engine.store, engine.normalizer
    assert store is not None and norm is not None
    ws = store.state_dict(keys)
    slots = np.array([store.slots[k] for k in ws["keys"]], dtype=np.int64)
    return {
        "windows": ws,
        "normalizer": norm.state_dict(slots),
        "calibrator": engine.calibrator.state_dict(slots),
        "fusion": engine.fusion.state_dict(slots),
        "prev_fc": torch.from_numpy(engine.prev_fc[slots].copy()),
        "fc_age": torch.from_numpy(engine.fc_age[slots].copy()),
        "has_fc": torch.from_numpy(engine.has_fc[slots].copy()),
        "last_anom": torch.from_numpy(engine.last_anom[slots].copy()),
        "since_flag": torch.from_numpy(engine.since_flag[slots].copy()),
        "n_windows": torch.from_numpy(engine.n_windows[slots].copy()),
        "ar": None if engine.ar is None else engine.ar.state_dict(slots),
        "shape": None if engine.shape is None else engine.shape.state_dict(slots),
        "alerts": engine.alerter.state_dict(ws["keys"]),
        "key_partition": {k: list(engine.key_partition.get(k, ("", -1))) for k in ws["keys"]},
    }


def held_state(engine: Engine, tps: list[tuple[str, int]] | None = None) -> dict[str, Any] | None:
    """Records the reorder gate holds from partitions ``tps`` (all when None); None without a
    gate."""
    return None if engine.gate is None else engine.gate.state_dict(tps)


def load_held_state(engine: Engine, state: dict[str, Any] | None) -> int:
    """Hold the records of :func:`held_state` in the engine's gate again; returns how many."""
    if not state or not state["key"]:
        return 0
    if engine.gate is None:
        # The pipeline stopped reordering since the checkpoint. A gate without lateness holds
        # these until their key's next record and then acts as late_policy=drop does.
        from streamgen.core.gate import LatenessGate

        engine.gate = LatenessGate(0)
    return engine.gate.load_state_dict(state)


def load_model_state(engine: Engine, state: dict[str, Any]) -> None:
    """Restore the shared model; builds the engine's state for the checkpoint's channels."""
    channels = list(state["channels"])
    if engine.channels is not None and list(engine.channels) != channels:
        raise CheckpointError(
            f"checkpoint channels {channels} differ from the pipeline's {engine.channels}"
        )
    engine.decoder.channels = channels
    if engine.store is None:
        engine._build(len(channels))
    assert engine.learner is not None
    engine.learner.load_state_dict(state["learner"])
    engine.records_total = int(state.get("records_total", 0))


def load_keys_state(engine: Engine, state: dict[str, Any]) -> None:
    """Merge per-key state into the engine (partition assigned, or a resumed file run)."""
    store, norm = engine.store, engine.normalizer
    assert store is not None and norm is not None
    slots = store.load_state_dict(state["windows"])
    engine._ensure()
    norm.load_state_dict(state["normalizer"], slots)
    engine.calibrator.load_state_dict(state["calibrator"], slots)
    engine.fusion.load_state_dict(state.get("fusion"), slots)
    if engine.ar is not None and state.get("ar") is not None:
        engine.ar.load_state_dict(state["ar"], slots)
    if engine.shape is not None:
        engine.shape.load_state_dict(state.get("shape"), slots)
    for i, s in enumerate(slots):
        engine.prev_fc[s] = state["prev_fc"][i].numpy()
        engine.fc_age[s] = int(state["fc_age"][i])
        engine.has_fc[s] = bool(state["has_fc"][i])
        engine.last_anom[s] = bool(state["last_anom"][i])
        if "since_flag" in state:  # older checkpoints: as if never flagged
            engine.since_flag[s] = int(state["since_flag"][i])
        engine.n_windows[s] = int(state["n_windows"][i])
    engine.alerter.load_state_dict(state["alerts"])
    for k, (topic, part) in state["key_partition"].items():
        engine.key_partition[k] = (topic, int(part))


def full_state(engine: Engine) -> dict[str, Any]:
    """Everything in one dict (``score --checkpoint-out``)."""
    out = model_state(engine)
    out["kind"] = "full"
    out["keys"] = keys_state(engine)
    out["held"] = held_state(engine)
    out["offsets"] = [[t, p, o] for (t, p), o in engine.offsets.items()]
    return out


def load_full_state(engine: Engine, state: dict[str, Any]) -> None:
    load_model_state(engine, state)
    if "keys" in state:
        load_keys_state(engine, state["keys"])
    load_held_state(engine, state.get("held"))
    for t, p, o in state.get("offsets", []):
        engine.offsets[(t, int(p))] = int(o)


def check_writable(path: str | Path) -> None:
    """Raise CheckpointError now if a checkpoint could not be written to ``path`` later (its
    folder cannot be created or written), before hours of work are spent."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{p.name}.", suffix=".probe", dir=p.parent):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint to {p}: {exc.strerror}") from None
