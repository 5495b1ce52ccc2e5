"""Shared fixtures. Real-broker fixtures live in :mod:`tests.kafka_fixtures`."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.kafka_fixtures"]


@pytest.fixture
def stream_file(tmp_path):
    """Factory: write a synthetic labelled stream and return its path."""
    from streamgen.bench.synthetic import write_stream

    def make(name: str = "stream.csv", **kwargs: object):
        path = tmp_path / name
        write_stream(path, **kwargs)
        return path

    return make
