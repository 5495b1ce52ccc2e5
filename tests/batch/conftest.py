"""Fixtures for batch tests: tiny histories written on demand (factories, not files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny GRUs run faster on one thread, and the test machine has two cores to share."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def history_csv(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a two-key noisy-sine CSV with a timestamp gap, a NaN row and bad rows.

    Returns the path; rows are interleaved across keys like a real recording.
    Layout (data rows): key ``x`` misses t = 50..52 and has ``nan`` at t = 70; key ``y`` has
    a spike at t = 80 labelled ``is_anomaly = 1``; row 9 has an unparsable time and row 19
    a non-numeric value.
    """

    def make(n: int = 120, name: str = "history.csv", bad_rows: bool = True) -> Path:
        rng = np.random.default_rng(0)
        lines = []
        for t in range(n):
            for k in ("x", "y"):
                if k == "x" and 50 <= t < 53:
                    continue
                a = np.sin(0.3 * t) + 0.05 * rng.standard_normal()
                b = np.cos(0.2 * t)
                label = 0
                if k == "y" and t == 80:
                    a, label = a + 5.0, 1
                cell = "nan" if (k == "x" and t == 70) else f"{a:.4f}"
                lines.append(f"{1_700_000_000 + t},{k},{cell},{b:.4f},{label}")
        if bad_rows:
            lines.insert(9, "garbage,x,1,2,0")
            lines.insert(19, "1700000005,x,oops,1.0,0")
        path = tmp_path / name
        path.write_text("timestamp,key,a,b,is_anomaly\n" + "\n".join(lines) + "\n")
        return path

    return make
