"""The live status page in a real browser: ``streamgen demo`` (its own broker, stream and
service) serves it, a headless Chromium driven over the DevTools protocol renders it, and the
test reads the rendered page: charts drawn from data, no console error, no uncaught
exception. The screenshot it takes is the README's (``STREAMGEN_STATUS_SCREENSHOT=path``
saves a copy there)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import Chromium, find_chromium
from tests.kafka.helpers import ROOT

pytestmark = pytest.mark.browser

KEYS = 6  # metrics.status_keys (the default)


def _status(url: str) -> dict:
    with urllib.request.urlopen(url + "status.json", timeout=5) as r:
        return json.load(r)


def _ready_to_look(s: dict) -> bool:
    """Enough history for every chart, continuations checked, some alerts."""
    keys = [s["keys"][k] for k in s["busiest"]]
    return (len(keys) == KEYS and all(len(k["points"]["seq"]) >= 100 for k in keys)
            and all(k["checked"] for k in keys) and len(s["alerts"]["recent"]) >= 2
            and (s["throughput"]["records_per_s"] or 0) > 0)


def _save_screenshot(png: Path, dest: str) -> None:
    """Copy the screenshot for the docs, as a 256-colour PNG when Pillow is there."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(png, dest)
        return
    with Image.open(png) as im:
        im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(dest, optimize=True)


@pytest.mark.kafka
def test_status_page_renders_live_charts_in_chromium(tmp_path):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgen", "demo", "--seconds", "90", "--metrics-port", "0",
         "--report", str(tmp_path / "report")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 40
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"live status: (http://\S+/)", "".join(lines))
            url = found.group(1) if found else None
            time.sleep(0.1)
        assert url, "".join(lines)
        while True:
            snap = _status(url)
            if _ready_to_look(snap):
                break
            assert time.monotonic() < deadline, json.dumps(snap)[:3000]
            time.sleep(0.5)

        with Chromium(tmp_path / "profile") as browser:
            browser.call("Emulation.setDeviceMetricsOverride", {
                "width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
            browser.navigate(url)
            browser.wait_for("document.body.dataset.updated")
            first = browser.evaluate("document.body.dataset.updated")
            # it polls: a second update replaces the first
            browser.wait_for(f"document.body.dataset.updated !== '{first}'", timeout=10)
            page = browser.evaluate("""(() => {
              const q = (sel, root) => Array.from((root || document).querySelectorAll(sel));
              const chart = svg => ({
                points: Number(svg.dataset.points),
                segments: (svg.querySelector('path.values')?.getAttribute('d') || '')
                          .split('L').length - 1,
                forecast: !!svg.querySelector('path.forecast'),
                band: !!svg.querySelector('polygon.forecast-band'),
                checked: !!svg.querySelector('path.checked'),
                scores: (svg.querySelector('path.scores')?.getAttribute('d') || '').length,
                threshold: !!svg.querySelector('line.threshold'),
              });
              return {
                state: document.getElementById('state').textContent,
                title: document.getElementById('title').textContent,
                tiles: q('.tile').map(t => [t.querySelector('.label').textContent,
                                            t.querySelector('.value').textContent]),
                sparks: q('.tile path.spark').length,
                busiest: q('#busiest .card').map(c => c.dataset.key),
                anomalous: q('#anomalous .card').map(c => c.dataset.key),
                charts: q('svg.chart').map(chart),
                forecastText: q('.card .fc').map(e => e.textContent),
                recentAlerts: q('#recent tr').length - 1,
                error: getComputedStyle(document.getElementById('error')).display,
              };
            })()""")
            shot = browser.screenshot(tmp_path / "status-page.png", 1280, 1000)
            problems = browser.problems()

        assert page["state"] == "ready", page
        assert page["title"].startswith("demo")
        tiles = dict(page["tiles"])
        assert float(tiles["records / s"]) > 0 and tiles["consumer lag"] != "–"
        assert page["sparks"] == 2  # throughput and lag over time
        assert len(page["busiest"]) == KEYS and 1 <= len(page["anomalous"]) <= KEYS
        assert all(k.startswith("sensor-") for k in page["busiest"] + page["anomalous"])
        assert len(page["charts"]) == len(page["busiest"]) + len(page["anomalous"])
        for c in page["charts"]:
            assert c["points"] >= 100 and c["segments"] >= 90, c  # a line through the data
            assert c["forecast"] and c["band"] and c["checked"], c  # continuation ± spread
            assert c["scores"] > 0 and c["threshold"], c
        assert all("mean abs error" in t for t in page["forecastText"]), page["forecastText"]
        assert page["recentAlerts"] >= 2
        assert page["error"] == "none"
        assert problems == [], problems  # no console error, no uncaught exception
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        dest = os.environ.get("STREAMGEN_STATUS_SCREENSHOT")
        if dest:
            _save_screenshot(shot, dest)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines)[-3000:]


def test_the_browser_harness_reports_console_errors_and_exceptions(tmp_path):
    """The check above means something: a page that logs an error and throws is caught."""
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><link rel='icon' href='data:,'><body><script>"
                    "console.error('broken'); null.x;</script><p id='ok'>x</p></body>")
    with Chromium(tmp_path / "profile") as browser:
        browser.navigate(page.as_uri())
        browser.wait_for("!!document.getElementById('ok')")
        problems = browser.problems()
    assert any("console.error" in p and "broken" in p for p in problems), problems
    assert any(p.startswith("exception: TypeError") for p in problems), problems
