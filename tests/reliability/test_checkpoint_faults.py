"""A checkpoint write that fails part-way leaves the previous checkpoint loadable."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from streamgen.core import checkpoint
from streamgen.errors import CheckpointError

pytestmark = pytest.mark.reliability


def test_disk_full_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "state" / "model.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "step": 1}, path)
    real_fdopen = os.fdopen

    class FullDisk:
        """The temp file: some bytes reach it, then the disk fills."""

        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:13])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "step": 2}, path)
    monkeypatch.setattr(checkpoint.os, "fdopen", real_fdopen)
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "step": 1}, path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot read"):
        checkpoint.load(path)
    torch.save({"something": "else"}, path)
    with pytest.raises(CheckpointError, match="not a streamgen checkpoint"):
        checkpoint.load(path)
