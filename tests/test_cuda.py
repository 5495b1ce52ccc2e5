"""The CUDA path: `device: auto` really uses the GPU when there is one (skipped otherwise)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamgen.bench.synthetic import make_stream
from streamgen.config import PipelineConfig, apply_overrides
from streamgen.core.engine import Engine, Sinks
from streamgen.core.ports import RawMessage
from streamgen.io.files import ListSink
from streamgen.models.registry import MODEL_NAMES
from streamgen.records import Position

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("bf16", [False, True])
def test_engine_runs_on_cuda_with_auto_device(model, bf16):
    cfg = apply_overrides(PipelineConfig(), [f"model.name={model}", f"model.bf16={bf16}",
                                             "model.warmup_steps=5"])
    sink = ListSink()
    eng = Engine(cfg, Sinks(scores=sink))
    rows = make_stream(n_keys=4, n_points=300, seed=1)
    msgs = [RawMessage(json.dumps(r).encode(), Position("t", 0, i)) for i, r in enumerate(rows)]
    for i in range(0, len(msgs), 256):
        eng.process(msgs[i : i + 256])
    assert eng.learner.device.type == "cuda"
    assert all(p.is_cuda for p in eng.learner.model.parameters())
    assert eng.learner.step > 0
    assert np.isfinite([r["score"] for r in sink.rows]).all()
