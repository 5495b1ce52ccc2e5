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

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from streamgen.errors import CheckpointError

if TYPE_CHECKING:
    from streamgen.core.engine import Engine

# 2: partition files (and full states) carry the records held by the reorder gate ("held").
# Format 1 files still load (they hold none); a reader that only knows 1 refuses format 2, which
# it would otherwise read while silently dropping the held records.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


def dumps(obj: dict[str, Any]) -> bytes:
    """A checkpoint dict as the bytes of a ``torch.save`` file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def loads(data: bytes, where: str) -> dict[str, Any]:
    """Bytes of a checkpoint back to its dict: weights-only (no arbitrary code), and only a
    streamgen format this version reads; ``where`` names it in errors."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        # torch's own text can advise loading with weights_only=False (running code from the
        # file) or say "[Errno 22] Invalid argument" for a truncated one: name the fault.
        raise CheckpointError(
            f"cannot read checkpoint {where}: not a complete checkpoint written by streamgen "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{where}: not a streamgen checkpoint (format {FORMAT_VERSION})")
    if obj["format"] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{where}: checkpoint format {obj['format']!r} is not readable by this version "
            f"(reads {', '.join(map(str, READABLE_FORMATS))}); was it written by a newer one?"
        )
    return obj


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync,
    ``os.replace``, fsync of the folder); raise CheckpointError on any failure."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
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


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically; raise CheckpointError on any failure."""
    write_atomic(path, dumps(obj))


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (weights-only, no arbitrary code)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from exc
    return loads(data, str(p))


# The functions below give the engine's state its file format: each stamps or checks
# ``format`` and ``kind`` and leaves the content to the engine's partition-state API
# (:meth:`Engine.export_model`, :meth:`Engine.export_keys`, :meth:`Engine.export_held`, ...).
# The layout of every dict is unchanged since format 1 (format 2 added ``held``).


def model_state(engine: Engine) -> dict[str, Any]:
    """Model, optimizer and everything shared across keys (``model.pt``)."""
    return {"format": FORMAT_VERSION, "kind": "model", **engine.export_model()}


def load_model_state(engine: Engine, state: dict[str, Any]) -> None:
    """Restore the shared model; builds the engine's state for the checkpoint's channels."""
    engine.import_model(state)


def keys_state(engine: Engine, keys: list[str] | None = None) -> dict[str, Any]:
    """Per-key state of ``keys`` (all when None)."""
    state = engine.export_keys(keys)
    assert state is not None, "no per-key state before the first record"
    return state


def load_keys_state(engine: Engine, state: dict[str, Any]) -> None:
    """Merge per-key state into the engine (partition assigned, or a resumed file run)."""
    engine.import_keys(state)


def partition_state(
    engine: Engine, tp: tuple[str, int], keys: list[str], offset: int
) -> dict[str, Any]:
    """One partition's checkpoint (``partitions/<topic>-<p>.pt``): its keys (None before the
    engine has any), the records the reorder gate holds from it, and the offset of the last
    record taken into that state."""
    return {
        "format": FORMAT_VERSION,
        "kind": "partition",
        "topic": tp[0],
        "partition": tp[1],
        "offset": int(offset),
        "channels": list(engine.channels or []),
        "keys": engine.export_keys(keys),
        "held": engine.export_held([tp]),
    }


def load_partition_state(engine: Engine, state: dict[str, Any]) -> int:
    """Merge a :func:`partition_state` into the engine (keys and held records; not the
    offset, which the caller seeks to); returns how many held records it restored.

    Raises CheckpointError (channels differ), KeyError or ValueError (a malformed file)."""
    channels = list(state.get("channels") or [])
    has_keys = state.get("keys") is not None and bool(state["keys"]["windows"]["keys"])
    held = state.get("held")  # None in format 1 files (and without a reorder gate)
    if has_keys or (held and held["key"]):
        engine.use_channels(channels, "channels")
    if has_keys:
        engine.import_keys(state["keys"])
    return engine.import_held(held)


def full_state(engine: Engine) -> dict[str, Any]:
    """Everything in one dict (``score --checkpoint-out``)."""
    return {"format": FORMAT_VERSION, "kind": "full", **engine.full_state()}


def load_full_state(engine: Engine, state: dict[str, Any]) -> None:
    engine.load_full_state(state)


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
