"""Where checkpoints live: a local folder or S3-compatible object storage, behind one store.

``checkpoint.dir`` is a local path or ``s3://bucket/prefix`` (docs/architecture.md, "Checkpoint
store"). Two layers:

* a **backend** moves bytes: :meth:`~Backend.put`, :meth:`~Backend.get`, :meth:`~Backend.list`
  and :meth:`~Backend.delete` by key (``model.pt``, ``partitions/t-0.json``, ...).
  :class:`LocalBackend` writes each file atomically (temp file, fsync, ``os.replace``, fsync
  of the folder); :class:`S3Backend` uses boto3 (``pip install 'streamgen[s3]'``), where a PUT
  is atomic per object.
* a :class:`CheckpointStore` turns a checkpoint dict into bytes (``torch.save``) and back
  (``torch.load(weights_only=True)``), in one of two layouts, written once for every backend:

  ``file`` (a local folder, the default there): one object per checkpoint, ``model.pt`` and
  ``partitions/<topic>-<p>.pt``, replaced atomically; the layout of every earlier version.

  ``versioned`` (object storage): each save writes a new object
  ``<name>/<seq>-<id>.pt`` (``model/000000000007-1f2e3d4c.pt``), then a small manifest
  ``<name>.json`` naming it with its size and SHA-256, and the version before it. A reader
  reads the manifest, then the object, and checks size and hash; a missing or truncated
  object, a hash mismatch or an unreadable checkpoint is logged (one warning naming the
  object) and the previous version is loaded instead, so a half-written checkpoint is never
  loaded. Without a manifest the versions found by listing are tried, newest first. After a
  manifest is written, versions older than the previous one are deleted (at most two remain,
  plus any a concurrent writer is still writing).

Each layout also reads the other's (a folder copied from a bucket, or ``model.pt`` copied into
one). Errors of either backend become :class:`~streamgen.errors.CheckpointError`; a missing
boto3 or a bad ``s3://`` setting is a :class:`~streamgen.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from streamgen.core import checkpoint
from streamgen.errors import CheckpointError, ConfigError
from streamgen.io.secrets import resolve_secrets

if TYPE_CHECKING:
    from streamgen.config import CheckpointConfig

__all__ = [
    "Backend",
    "CheckpointStore",
    "LocalBackend",
    "S3Backend",
    "is_s3_url",
    "open_store",
]

log = logging.getLogger("streamgen.store")

MANIFEST_FORMAT = 1
_VERSION_RE = re.compile(r"^(\d{12,})-([0-9a-f]{8,32})\.pt$")


def is_s3_url(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names object storage (``s3://bucket/prefix``)."""
    return isinstance(location, str) and location.startswith("s3://")


# -- backends -----------------------------------------------------------------------------------


class Backend(Protocol):
    """Bytes by key (``/``-separated, relative to the store's root)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (a reader sees the old or the new bytes)."""

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None if there are none."""

    def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (a folder: end it with ``/``)."""

    def delete(self, keys: Iterable[str]) -> None:
        """Remove ``keys`` (a missing one is not an error)."""

    def where(self, key: str) -> str:
        """``key`` as a path or URL, for messages."""


class LocalBackend:
    """Files under ``root``; each :meth:`put` is a temp file, fsync, ``os.replace``, fsync of
    the folder (what :func:`streamgen.core.checkpoint.save_atomic` does)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def where(self, key: str) -> str:
        return str(self.path(key))

    def put(self, key: str, data: bytes) -> None:
        checkpoint.write_atomic(self.path(key), data)

    def get(self, key: str) -> bytes | None:
        p = self.path(key)
        try:
            return p.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from exc

    def list(self, prefix: str) -> list[str]:
        folder, _, start = prefix.rpartition("/")
        base = self.path(folder) if folder else self.root
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):  # temp files of a put
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError as exc:
                raise CheckpointError(
                    f"cannot delete {self.where(key)}: {exc.strerror or exc}") from exc


class S3Backend:
    """Objects under ``s3://bucket/prefix`` through a boto3 S3 client.

    Build it with :meth:`from_url`; ``client`` may be any boto3 S3 client (tests, custom
    sessions).
    """

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> S3Backend:
        """A backend for ``s3://bucket/prefix``. Unset credentials and region come from boto3's
        usual chain (``AWS_*`` variables, ``~/.aws``, an instance role); with ``endpoint``
        (MinIO, SeaweedFS, Ceph, ...) requests use path-style addressing."""
        bucket, prefix = parse_s3_url(url)
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError(
                f"checkpoint.dir: {url} needs boto3 (pip install 'streamgen[s3]')") from None
        if (access_key is None) != (secret_key is None):
            raise ConfigError("checkpoint.s3_access_key and checkpoint.s3_secret_key: set both "
                              "or neither")
        config = Config(
            connect_timeout=5, read_timeout=30,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else None,
            # Checksums only where S3 requires them: several S3-compatible servers reject the
            # newer default ones, and the manifest's SHA-256 checks every object read anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=region or None,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=config,
        )
        return cls(bucket, prefix, client)

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except self._errors as exc:
            raise CheckpointError(f"cannot write checkpoint {self.where(key)}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return bytes(obj["Body"].read())
        except self._errors as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise CheckpointError(f"cannot read checkpoint {self.where(key)}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                out.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", []))
        except self._errors as exc:
            raise CheckpointError(f"cannot list {self.where(prefix)}: {exc}") from exc
        return sorted(out)

    def delete(self, keys: Iterable[str]) -> None:
        todo = [self.prefix + k for k in keys]
        for i in range(0, len(todo), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = todo[i:i + 1000]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            except self._errors as exc:
                raise CheckpointError(f"cannot delete under {self.where('')}: {exc}") from exc
            errors = answer.get("Errors") or []
            if errors:
                raise CheckpointError(
                    f"cannot delete s3://{self.bucket}/{errors[0].get('Key')}: "
                    f"{errors[0].get('Message') or errors[0].get('Code')}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``.

    >>> parse_s3_url("s3://ckpt/streamgen/prod/")
    ('ckpt', 'streamgen/prod')
    >>> parse_s3_url("s3:///x")
    Traceback (most recent call last):
    streamgen.errors.ConfigError: checkpoint.dir: 's3:///x' names no bucket (s3://bucket/prefix)
    """
    rest = url[len("s3://"):] if url.startswith("s3://") else ""
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"checkpoint.dir: {url!r} names no bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


# -- checkpoints over a backend -----------------------------------------------------------------


# The bytes of a checkpoint are core/checkpoint.py's: torch.save, read back weights-only with
# the format checks.
encode = checkpoint.dumps
decode = checkpoint.loads


Layout = Literal["file", "versioned"]


class CheckpointStore:
    """Named checkpoints (``model``, ``partitions/<topic>-<p>``) on a :class:`Backend`.

    Parameters
    ----------
    backend
        Where the bytes go.
    layout
        ``file``: ``<name>.pt`` replaced in place (needs an atomic ``put``: a local folder);
        ``versioned``: new object per save plus a manifest (see the module docstring).
    """

    def __init__(self, backend: Backend, layout: Layout) -> None:
        self.backend = backend
        self.layout = layout

    def location(self, name: str) -> str:
        """What names ``name``'s checkpoint: its file, or its manifest."""
        return self.backend.where(f"{name}.pt" if self.layout == "file" else f"{name}.json")

    # -- writing ------------------------------------------------------------------------------
    def save(self, name: str, obj: dict[str, Any]) -> None:
        """Write ``obj`` as ``name``'s checkpoint; CheckpointError if it did not happen."""
        data = encode(obj)
        if self.layout == "file":
            self.backend.put(f"{name}.pt", data)
            return
        versions = self._versions(name)
        old = self._manifest(name, quiet=True)
        previous = old["current"] if old else None
        if previous is None and versions:  # manifest lost: the newest version becomes previous
            seq0, key0 = versions[-1]
            body = self.backend.get(key0)
            if body is not None:
                previous = {"key": key0, "seq": seq0, "size": len(body),
                            "sha256": hashlib.sha256(body).hexdigest()}
        top = max([v[0] for v in versions] + [int(previous["seq"]) if previous else 0])
        seq = top + 1
        key = f"{name}/{seq:012d}-{uuid.uuid4().hex[:8]}.pt"
        self.backend.put(key, data)
        current = {"key": key, "seq": seq, "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {"format": MANIFEST_FORMAT, "name": name, "current": current,
                    "previous": previous}
        self.backend.put(f"{name}.json",
                         json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        # Cleanup: every version older than the previous one. A concurrent writer's newer
        # object is never older than the previous one, so it stays.
        keep_from = int(previous["seq"]) if previous else seq
        stale = [k for s, k in versions if s < keep_from]
        if stale:
            try:
                self.backend.delete(stale)
            except CheckpointError as exc:  # the checkpoint itself is written
                log.warning("old checkpoint versions not deleted: %s", exc)

    # -- reading ------------------------------------------------------------------------------
    def load(self, name: str) -> dict[str, Any] | None:
        """``name``'s newest usable checkpoint, or None if there is none.

        Raises
        ------
        CheckpointError
            When checkpoints exist but none of them can be read.
        """
        if self.layout == "file":
            data = self.backend.get(f"{name}.pt")
            if data is not None:
                return decode(data, self.backend.where(f"{name}.pt"))
        manifest = self._manifest(name)
        if manifest is not None:
            return self._from_manifest(name, manifest)
        versions = self._versions(name)
        if versions:
            return self._newest_listed(name, versions)
        if self.layout == "versioned":  # a file-layout checkpoint copied into the bucket
            data = self.backend.get(f"{name}.pt")
            if data is not None:
                return decode(data, self.backend.where(f"{name}.pt"))
        return None

    def _manifest(self, name: str, *, quiet: bool = False) -> dict[str, Any] | None:
        key = f"{name}.json"
        data = self.backend.get(key)
        if data is None:
            return None
        try:
            manifest = json.loads(data)
            cur = manifest["current"]
            if not (isinstance(cur["key"], str) and int(cur["size"]) >= 0 and cur["sha256"]):
                raise ValueError("bad entry")
            if manifest.get("format", MANIFEST_FORMAT) > MANIFEST_FORMAT:
                raise CheckpointError(
                    f"{self.backend.where(key)}: manifest format {manifest['format']} is newer "
                    "than this version reads")
        except (ValueError, KeyError, TypeError) as exc:
            if not quiet:
                log.warning("checkpoint manifest %s unreadable (%s); trying the versions found "
                            "by listing", self.backend.where(key), exc)
            return None
        return dict(manifest)

    def _from_manifest(self, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        entries = [e for e in (manifest.get("current"), manifest.get("previous")) if e]
        for i, entry in enumerate(entries):
            where = self.backend.where(entry["key"])
            try:
                data = self.backend.get(entry["key"])
                if data is None:
                    raise CheckpointError("object missing")
                if len(data) != int(entry["size"]):
                    raise CheckpointError(
                        f"{len(data)} bytes, the manifest says {entry['size']} (truncated?)")
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise CheckpointError("SHA-256 differs from the manifest's")
                return decode(data, where)
            except CheckpointError as exc:
                nxt = (f"loading the previous version {self.backend.where(entries[i + 1]['key'])}"
                       if i + 1 < len(entries) else "no earlier version")
                log.warning("checkpoint %s unusable: %s; %s", where, exc, nxt)
        raise CheckpointError(f"{self.location(name)}: no version of the checkpoint is usable")

    def _versions(self, name: str) -> list[tuple[int, str]]:
        """(seq, key) of every stored version of ``name``, oldest first."""
        out = []
        for key in self.backend.list(f"{name}/"):
            m = _VERSION_RE.match(key[len(name) + 1:])
            if m:
                out.append((int(m.group(1)), key))
        return sorted(out)

    def _newest_listed(self, name: str, versions: list[tuple[int, str]]) -> dict[str, Any]:
        log.warning("checkpoint manifest %s missing; loading the newest of %d listed versions "
                    "that reads", self.backend.where(f"{name}.json"), len(versions))
        for _, key in reversed(versions):
            data = self.backend.get(key)
            if data is None:
                continue
            try:
                return decode(data, self.backend.where(key))
            except CheckpointError as exc:
                log.warning("checkpoint %s unusable: %s", self.backend.where(key), exc)
        raise CheckpointError(f"{self.location(name)}: no version of the checkpoint is usable")


    # -- names ---------------------------------------------------------------------------------
    def names(self, prefix: str) -> list[str]:
        """The names of the checkpoints under ``prefix`` (``members/`` → ``members/a``, ...),
        sorted."""
        out = set()
        for key in self.backend.list(prefix):
            rest = key[len(prefix):]
            if "/" in rest:  # a version object: <name>/<seq>-<id>.pt
                out.add(prefix + rest.split("/", 1)[0])
            elif rest.endswith(".json") or rest.endswith(".pt"):
                out.add(prefix + rest.rsplit(".", 1)[0])
        return sorted(out)

    def delete(self, name: str) -> None:
        """Remove ``name``'s checkpoint, every version of it and its manifest."""
        self.backend.delete([f"{name}.pt", f"{name}.json",
                             *(k for _, k in self._versions(name))])


def open_store(location: str | os.PathLike[str], config: CheckpointConfig | None = None,
               ) -> CheckpointStore:
    """The store for ``checkpoint.dir``: a folder (``file`` layout) or ``s3://bucket/prefix``
    (``versioned`` layout, endpoint and credentials from ``config``'s ``s3_*`` fields, whose
    ``env:``/``file:`` values are resolved here)."""
    if not is_s3_url(location):
        return CheckpointStore(LocalBackend(location), "file")
    assert isinstance(location, str)
    fields = ("s3_endpoint", "s3_region", "s3_access_key", "s3_secret_key")
    given = {f: getattr(config, f) for f in fields if config is not None
             and getattr(config, f) is not None}
    s = resolve_secrets(given, "checkpoint")
    backend = S3Backend.from_url(
        location, endpoint=s.get("s3_endpoint"), region=s.get("s3_region"),
        access_key=s.get("s3_access_key"), secret_key=s.get("s3_secret_key"))
    return CheckpointStore(backend, "versioned")
