"""Where the service's checkpoints live: ``model`` + ``partitions/<topic>-<p>`` under
``checkpoint.dir``, a folder or ``s3://bucket/prefix``, through a
:class:`~streamgen.io.store.CheckpointStore` (docs/architecture.md, "Checkpoint store"; the
file format is :mod:`streamgen.core.checkpoint`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamgen.core import checkpoint
from streamgen.io.store import CheckpointStore, is_s3_url, open_store

if TYPE_CHECKING:
    from streamgen.config import CheckpointConfig
    from streamgen.core.engine import Engine

TP = tuple[str, int]

__all__ = ["PartitionCheckpoints"]


class PartitionCheckpoints:
    """``model`` + ``partitions/<topic>-<p>`` under one ``checkpoint.dir`` (may be shared by the
    members of a consumer group: each partition is written only by its current owner).

    In a folder these are the files ``model.pt`` and ``partitions/<topic>-<p>.pt``, replaced
    atomically (the layout of every earlier version); in object storage (``s3://``) a new
    object per save behind a manifest each (``model.json``, ``partitions/<topic>-<p>.json``;
    :mod:`streamgen.io.store`).

    Parameters
    ----------
    root
        ``checkpoint.dir``: a path or ``s3://bucket/prefix``.
    config
        The ``checkpoint`` settings: endpoint, region and credentials of an ``s3://`` store
        (without them boto3's defaults apply).
    """

    def __init__(self, root: str | Path, config: CheckpointConfig | None = None) -> None:
        self.store: CheckpointStore = open_store(root, config)
        self.root: Path | str = root if is_s3_url(root) else Path(root)
        self.model_path: Path | str = self._where("model")

    def _where(self, name: str) -> Path | str:
        where = self.store.location(name)
        return where if is_s3_url(self.root) else Path(where)

    def partition_path(self, tp: TP) -> Path | str:
        """The partition's file (a folder) or its manifest's URL (object storage)."""
        return self._where(self.partition_name(tp))

    @staticmethod
    def partition_name(tp: TP) -> str:
        return f"partitions/{tp[0]}-{tp[1]}"

    def save_model(self, engine: Engine) -> None:
        self.store.save("model", checkpoint.model_state(engine))

    def save_partition(self, engine: Engine, tp: TP, keys: list[str], offset: int) -> None:
        state = checkpoint.partition_state(engine, tp, keys, offset)
        self.store.save(self.partition_name(tp), state)

    def load_model(self) -> dict[str, Any] | None:
        return self.store.load("model")

    def load_partition(self, tp: TP) -> dict[str, Any] | None:
        return self.store.load(self.partition_name(tp))
