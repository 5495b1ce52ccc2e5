"""KafkaSink and security handling without a broker (a fake producer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future

from streamgen.config import KafkaConfig
from streamgen.errors import ConfigError, SinkError, SourceError
from streamgen.io.kafka import (
    KafkaSink,
    describe_security,
    encode_json,
    encode_row,
    make_reader,
    resolve_security,
)

pytestmark = pytest.mark.kafka


class _Meta:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeProducer:
    """Completes each send as told: an offset, or an exception; ``stall`` flushes time out."""

    def __init__(self, outcomes=None, stall: int = 0) -> None:
        self.config = {"delivery_timeout_ms": 1000}
        self.outcomes = list(outcomes or [])
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.stall = stall

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))
        fut = Future()
        outcome = self.outcomes.pop(0) if self.outcomes else len(self.sent) - 1
        if isinstance(outcome, BaseException):
            fut.failure(outcome)
        else:
            fut.success(_Meta(outcome))
        return fut

    def flush(self, timeout=None):
        if self.stall:
            self.stall -= 1
            raise KafkaTimeoutError("flush timed out")


def test_rows_are_keyed_json():
    prod = FakeProducer()
    sink = KafkaSink(prod, "scores")
    sink.add({"key": "pump-1", "score": 1.5, "calibrated": float("nan")})
    sink.add({"key": None, "reason": "not valid JSON"})
    sink.flush()
    assert prod.sent[0] == ("scores", b"pump-1", b'{"key":"pump-1","score":1.5,"calibrated":null}')
    assert prod.sent[1][1] is None
    assert sink.sent == 2 and sink.pending() == 0


def test_failed_send_fails_the_flush():
    prod = FakeProducer([0, NotLeaderForPartitionError("gone"), 2])
    sink = KafkaSink(prod, "scores")
    for i in range(3):
        sink.add({"key": str(i)})
    with pytest.raises(SinkError, match="1 of 3 rows failed"):
        sink.flush()


def test_ack_without_offset_is_not_trusted():
    sink = KafkaSink(FakeProducer([0, -1]), "scores")
    sink.add({"key": "a"})
    sink.add({"key": "b"})
    with pytest.raises(SinkError, match="without an offset"):
        sink.flush()


def test_stalled_flush_reports_and_gives_up():
    stalls = []
    sink = KafkaSink(FakeProducer(stall=10**6), "scores", flush_timeout_s=0.0,
                     on_stall=lambda: stalls.append(1))
    sink.add({"key": "a"})
    with pytest.raises(SinkError, match="not acknowledged"):
        sink.flush()
    assert stalls


def test_stalled_flush_that_recovers_succeeds():
    stalls = []
    sink = KafkaSink(FakeProducer(stall=2), "scores", on_stall=lambda: stalls.append(1))
    sink.add({"key": "a"})
    sink.flush()
    assert len(stalls) == 2


def test_reader_without_a_broker_is_a_source_error():
    with pytest.raises(SourceError, match="cannot connect to 127.0.0.1:1"):
        make_reader(KafkaConfig(bootstrap_servers="127.0.0.1:1"), bootstrap_timeout_ms=300)


def test_security_values_from_env_and_file(tmp_path, monkeypatch):
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("SG_TEST_USER", "alice")
    sec = {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
           "sasl_plain_username": "env:SG_TEST_USER",
           "sasl_plain_password": f"file:{secret_file}"}
    out = resolve_security(sec)
    assert out["sasl_plain_username"] == "alice"
    assert out["sasl_plain_password"] == "from-file"
    shown = str(describe_security(sec))
    assert "alice" not in shown and "from-file" not in shown and str(secret_file) not in shown


@pytest.mark.parametrize("sec, field", [
    ({"sasl_plain_password": "env:SG_TEST_SURELY_UNSET"}, "kafka.security.sasl_plain_password"),
    ({"ssl_cafile": "file:/nonexistent/ca.pem"}, "kafka.security.ssl_cafile"),
    ({"bootstrap_servers": "x"}, "kafka.security.bootstrap_servers"),
])
def test_bad_security_names_the_field(sec, field):
    with pytest.raises(ConfigError, match=field):
        resolve_security(sec)


def test_encode_row_strict_json():
    import numpy as np

    assert encode_row({"v": np.float32(2.5), "w": [1.0, float("inf")]}) == b'{"v":2.5,"w":[1.0,null]}'


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-2**70, max_value=2**70)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _JSONISH, max_size=8))
def test_encode_row_is_byte_identical_with_and_without_orjson(row):
    """The orjson fast path (when installed) writes exactly what the json module writes:
    tiny floats, DEL, non-ASCII text, big integers fall back to json."""
    assert encode_row(row) == encode_json(row)


@pytest.mark.parametrize("value", [1e-7, -1.5e-5, 1e16, 0.1, "caf\u00e9", "del\x7f", 2**64,
                                   float("inf"), [1e-300, "\n"]])
def test_encode_row_edge_values(value):
    row = {"key": "k", "v": value}
    assert encode_row(row) == encode_json(row)
