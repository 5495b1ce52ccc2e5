"""The checkpoint store (streamgen/io/store.py, streamgen/checkpoints.py): the folder layout of
every earlier version, the versioned layout (new object + manifest per save) on a folder and on
a real S3 server (SeaweedFS, the ``local_s3`` fixture), its fallbacks to the previous version,
cleanup, and credentials given as ``env:NAME``."""

from __future__ import annotations

import json
import logging
import math
import sys
import uuid

import pytest

from streamgen.checkpoints import PartitionCheckpoints
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core import checkpoint
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.errors import CheckpointError, ConfigError
from streamgen.io.files import ListSink
from streamgen.io.store import CheckpointStore, LocalBackend, open_store
from streamgen.records import Position

TP0 = ("t", 0)


def _cfg(*extra: str) -> PipelineConfig:
    return apply_overrides(PipelineConfig(), [
        "model.hidden=16", "model.latent=4", "window.length=16", "model.horizon=4",
        "model.device=cpu", *extra])


def _engine(cfg: PipelineConfig, n_keys: int = 3, n_points: int = 40) -> Engine:
    engine = Engine(cfg, Sinks(scores=ListSink()))
    rows = [{"key": f"k{k}", "ts": 1_700_000_000 + t, "x0": round(math.sin(t / 5) + k, 6)}
            for t in range(n_points) for k in range(n_keys)]
    engine.process([RawMessage(json.dumps(r).encode(), Position("t", 0, i))
                    for i, r in enumerate(rows)])
    return engine


def _state(i: int) -> dict[str, object]:
    return {"format": checkpoint.FORMAT_VERSION, "kind": "test", "i": i, "pad": "x" * 100}


def _versions(store: CheckpointStore, name: str) -> list[str]:
    return store.backend.list(f"{name}/")


# -- the folder layout -----------------------------------------------------------------------


def test_folder_keeps_the_single_file_layout_and_reads_old_folders(tmp_path):
    engine = _engine(_cfg())
    ckpts = PartitionCheckpoints(tmp_path)
    ckpts.save_model(engine)
    ckpts.save_partition(engine, TP0, sorted(engine.key_partition), engine.offsets[TP0])
    assert ckpts.model_path == tmp_path / "model.pt"
    assert ckpts.partition_path(TP0) == tmp_path / "partitions" / "t-0.pt"
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert files == ["model.pt", "partitions", "partitions/t-0.pt"]  # no temp file left
    assert checkpoint.load(tmp_path / "partitions" / "t-0.pt")["offset"] == 119

    # A folder written by the earlier code (core.checkpoint.save_atomic) loads unchanged.
    old = tmp_path / "old"
    checkpoint.save_atomic(checkpoint.model_state(engine), old / "model.pt")
    checkpoint.save_atomic({**ckpts.load_partition(TP0), "offset": 7}, old / "partitions" / "t-0.pt")
    again = PartitionCheckpoints(old)
    assert again.load_partition(TP0)["offset"] == 7
    fresh = Engine(_cfg(), Sinks())
    checkpoint.load_model_state(fresh, again.load_model())
    assert fresh.learner.step == engine.learner.step
    assert PartitionCheckpoints(tmp_path / "empty").load_partition(TP0) is None


def test_a_broken_file_is_still_an_error_in_the_folder_layout(tmp_path):
    ckpts = PartitionCheckpoints(tmp_path)
    (tmp_path / "partitions").mkdir()
    (tmp_path / "partitions" / "t-0.pt").write_bytes(b"PK\x03\x04 half a file")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        ckpts.load_partition(TP0)


# -- the versioned layout, on a folder (the same code runs on S3 below) ----------------------


def test_versioned_round_trip_cleanup_and_fallbacks_on_a_folder(tmp_path, caplog):
    store = CheckpointStore(LocalBackend(tmp_path), "versioned")
    assert store.load("model") is None
    for i in range(5):
        store.save("model", _state(i))
        assert store.load("model")["i"] == i
        assert len(_versions(store, "model")) <= 2  # cleanup keeps current + previous
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert manifest["current"]["seq"] == 5 and manifest["previous"]["seq"] == 4
    assert _versions(store, "model") == [manifest["previous"]["key"], manifest["current"]["key"]]
    current = tmp_path / manifest["current"]["key"]

    # A truncated current version: the previous one loads, one warning names the object.
    data = current.read_bytes()
    current.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("model")["i"] == 3
    assert [r.getMessage() for r in caplog.records if str(current) in r.getMessage()]
    assert "truncated" in caplog.text and "loading the previous version" in caplog.text

    # Same size, different bytes: the hash catches it.
    caplog.clear()
    current.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("model")["i"] == 3
    assert "SHA-256" in caplog.text

    # The current object gone: the previous one.
    current.unlink()
    assert store.load("model")["i"] == 3

    # Both unusable: an error, never a half-written checkpoint.
    previous = tmp_path / manifest["previous"]["key"]
    previous.write_bytes(previous.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no version of the checkpoint is usable"):
        store.load("model")


def test_versioned_without_a_manifest_loads_the_newest_complete_version(tmp_path, caplog):
    store = CheckpointStore(LocalBackend(tmp_path), "versioned")
    store.save("partitions/t-0", _state(1))
    store.save("partitions/t-0", _state(2))
    (tmp_path / "partitions" / "t-0.json").unlink()
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("partitions/t-0")["i"] == 2
    assert "manifest" in caplog.text and "missing" in caplog.text
    # A broken newest version is skipped for the one before it.
    newest = tmp_path / _versions(store, "partitions/t-0")[-1]
    newest.write_bytes(newest.read_bytes()[:50])
    assert store.load("partitions/t-0")["i"] == 1
    # The next save heals the store: a manifest again, and the versions before are cleaned.
    store.save("partitions/t-0", _state(3))
    assert store.load("partitions/t-0")["i"] == 3
    assert len(_versions(store, "partitions/t-0")) == 2
    # A name that is the prefix of another (t-1 vs t-10) does not see the other's versions.
    store.save("partitions/t-10", _state(10))
    store.save("partitions/t-1", _state(11))
    assert store.load("partitions/t-1")["i"] == 11 and store.load("partitions/t-10")["i"] == 10


def test_each_layout_reads_the_other(tmp_path):
    """A folder copied from a bucket (manifests) and a file-layout checkpoint copied into a
    versioned store both load."""
    CheckpointStore(LocalBackend(tmp_path / "a"), "versioned").save("model", _state(1))
    assert CheckpointStore(LocalBackend(tmp_path / "a"), "file").load("model")["i"] == 1
    CheckpointStore(LocalBackend(tmp_path / "b"), "file").save("model", _state(2))
    assert CheckpointStore(LocalBackend(tmp_path / "b"), "versioned").load("model")["i"] == 2


# -- configuration -----------------------------------------------------------------------------


def test_s3_settings_need_an_s3_dir_and_boto3(monkeypatch):
    with pytest.raises(ConfigError, match="s3_endpoint is set but dir is not"):
        _cfg("checkpoint.dir=/tmp/x", "checkpoint.s3_endpoint=http://127.0.0.1:1")
    cfg = _cfg("checkpoint.dir=s3://bucket/prefix", "checkpoint.s3_access_key=env:SG_NOPE_KEY",
               "checkpoint.s3_secret_key=x")
    monkeypatch.delenv("SG_NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"checkpoint.s3_access_key: environment variable "
                                          r"SG_NOPE_KEY is not set"):
        open_store(cfg.checkpoint.dir, cfg.checkpoint)
    with pytest.raises(ConfigError, match="names no bucket"):
        open_store("s3://", None)
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"needs boto3 \(pip install 'streamgen\[s3\]'\)"):
        open_store("s3://bucket/prefix", None)


# -- a real S3 server ----------------------------------------------------------------------------


@pytest.fixture
def s3_cfg(local_s3, monkeypatch):
    """Checkpoint settings for a fresh prefix of the local S3 bucket, keys given as env:."""
    pytest.importorskip("boto3")
    monkeypatch.setenv("SG_TEST_S3_KEY", local_s3.access_key)
    monkeypatch.setenv("SG_TEST_S3_SECRET", local_s3.secret_key)
    return _cfg(
        f"checkpoint.dir=s3://{local_s3.bucket}/ckpt-{uuid.uuid4().hex[:8]}",
        f"checkpoint.s3_endpoint={local_s3.endpoint}",
        f"checkpoint.s3_region={local_s3.region}",
        "checkpoint.s3_access_key=env:SG_TEST_S3_KEY",
        "checkpoint.s3_secret_key=env:SG_TEST_S3_SECRET",
    )


def test_s3_round_trip_of_model_and_partition_state(s3_cfg):
    engine = _engine(s3_cfg)
    ckpts = PartitionCheckpoints(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    assert ckpts.load_model() is None and ckpts.load_partition(TP0) is None
    ckpts.save_model(engine)
    keys = sorted(engine.key_partition)
    ckpts.save_partition(engine, TP0, keys, engine.offsets[TP0])
    assert str(ckpts.model_path) == f"{s3_cfg.checkpoint.dir}/model.json"
    assert str(ckpts.partition_path(TP0)) == f"{s3_cfg.checkpoint.dir}/partitions/t-0.json"

    # Read back by a new store object (another process, another machine).
    again = PartitionCheckpoints(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    part = again.load_partition(TP0)
    assert part["offset"] == engine.offsets[TP0] and part["keys"]["windows"]["keys"] == keys
    fresh = Engine(s3_cfg, Sinks())
    checkpoint.load_model_state(fresh, again.load_model())
    assert fresh.learner.step == engine.learner.step
    import torch

    for a, b in zip(engine.learner.model.parameters(), fresh.learner.model.parameters(),
                    strict=True):
        assert torch.equal(a, b)
    expected = checkpoint.partition_state(engine, TP0, keys, engine.offsets[TP0])
    assert _same(part, expected)


def _same(a: object, b: object) -> bool:
    import numpy as np
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    return a == b


def test_s3_faults_load_the_previous_version_and_cleanup_keeps_two(s3_cfg, caplog):
    store = open_store(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    backend = store.backend
    for i in range(4):
        store.save("partitions/t-3", _state(i))
    versions = _versions(store, "partitions/t-3")
    assert len(versions) == 2  # cleanup: current + previous
    manifest = json.loads(backend.get("partitions/t-3.json"))
    assert [manifest["previous"]["key"], manifest["current"]["key"]] == versions
    current = manifest["current"]["key"]
    data = backend.get(current)

    # Truncated object.
    backend.put(current, data[: len(data) - 10])
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("partitions/t-3")["i"] == 2
    assert backend.where(current) in caplog.text and "truncated" in caplog.text
    # Hash mismatch (same size).
    caplog.clear()
    backend.put(current, bytes([data[0] ^ 0xFF]) + data[1:])
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("partitions/t-3")["i"] == 2
    assert backend.where(current) in caplog.text and "SHA-256" in caplog.text
    # Missing manifest: the newest version that reads (the current one is still bad).
    backend.put(current, data)
    backend.delete(["partitions/t-3.json"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, "streamgen.store"):
        assert store.load("partitions/t-3")["i"] == 3
    assert "partitions/t-3.json missing" in caplog.text
    # Missing manifest and a broken newest object: the one before it.
    backend.put(current, data[:10])
    assert store.load("partitions/t-3")["i"] == 2
    # Saves go on and clean up.
    store.save("partitions/t-3", _state(9))
    store.save("partitions/t-3", _state(10))
    assert store.load("partitions/t-3")["i"] == 10
    assert len(_versions(store, "partitions/t-3")) == 2


def test_s3_wrong_credentials_fail_the_write_with_a_checkpoint_error(s3_cfg, monkeypatch):
    monkeypatch.setenv("SG_TEST_S3_SECRET", "not-the-secret")
    store = open_store(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    with pytest.raises(CheckpointError, match=r"^cannot \w+ (checkpoint )?s3://") as err:
        store.save("model", _state(0))
    assert "not-the-secret" not in str(err.value)


def test_s3_reads_a_folder_uploaded_as_is(s3_cfg, tmp_path):
    """``model.pt`` and ``partitions/*.pt`` of an earlier checkpoint folder copied into the
    bucket (``aws s3 cp --recursive``) load."""
    engine = _engine(s3_cfg)
    local = PartitionCheckpoints(tmp_path)
    local.save_partition(engine, TP0, sorted(engine.key_partition), 41)
    store = open_store(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    store.backend.put("partitions/t-0.pt", (tmp_path / "partitions" / "t-0.pt").read_bytes())
    ckpts = PartitionCheckpoints(s3_cfg.checkpoint.dir, s3_cfg.checkpoint)
    assert ckpts.load_partition(TP0)["offset"] == 41
    ckpts.save_partition(engine, TP0, sorted(engine.key_partition), 42)
    assert ckpts.load_partition(TP0)["offset"] == 42  # the manifest wins from then on
