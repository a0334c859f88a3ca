"""The reconciliation page as a person sees it: opened in headless Chromium, verdict and plot visible."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from etl.load import open_ledger
from etl.reconcile import reconcile
from tests.reconcile.builders import Scenario
from tests.support import SAMPLES_NOW, samples_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def test_the_html_report_shows_the_verdict_and_the_plot_in_a_browser(run_mpetl, tmp_path):
    # The sample night is simulated by the wall clock (--now only selects rows; see tests.support).
    config = samples_config(tmp_path, endpoint="local")
    for args in (["run", "--out", str(tmp_path / "run")],
                 ["reconcile", "--out", str(tmp_path / "rec"), "--since", "2026-11-17", "--until", "2026-11-21"]):
        done = run_mpetl("-q", args[0], "--config", str(config), *args[1:], "--now", SAMPLES_NOW,
                         env={"MP_API_SECRET": "browser-test-secret"}, clock=SAMPLES_NOW)
        assert done.returncode == 0, done.stderr
    page = (tmp_path / "rec" / "reconciliation.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page], capture_output=True, text=True, timeout=60)
    # Every event arrived, but the newest dates are still provisional at 06:00: a neutral headline, not green.
    assert "Arrived so far: every event sent was found, but" in dom.stdout
    assert 'class="pending"' in dom.stdout and 'class="reconciled"' not in dom.stdout
    assert scroll_width(tmp_path / "rec" / "reconciliation.html", tmp_path) <= 1280
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,1600", page],
                   capture_output=True, timeout=60, check=True)
    pixels = image.imread(shot)[..., :3]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # The plot's "found" bars are orange: only a decoded, displayed PNG puts them on screen.
    orange = (red > 0.85) & (green > 0.4) & (green < 0.65) & (blue < 0.3)
    assert np.count_nonzero(orange) > 2_000


def scroll_width(report: Path, tmp_path: Path) -> int:
    """The page's `document.documentElement.scrollWidth` in a 1280 px wide Chromium window: read from a copy
    of the report with one line of script that writes it into the DOM (the report itself has no script)."""
    probe = tmp_path / "probe.html"
    script = "<script>document.body.dataset.scrollWidth = document.documentElement.scrollWidth</script>"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, *FLAGS, "--user-data-dir=" + str(tmp_path / "probe-profile"), "--window-size=1280,900",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=60)
    return int(re.search(r'data-scroll-width="(\d+)"', dom.stdout).group(1))


def test_every_table_fits_a_1280_px_window_with_long_names_many_dates_and_currencies(tmp_path):
    """Long source and event names, 80-character transaction ids, 14 dates, three currencies, long reasons:
    nothing makes the page wider than the window (the per-date table once had 20 columns)."""
    s = Scenario(tmp_path)
    source = "salesforce_enterprise_opportunities_emea_north_2026_q4_closed_won"
    for day in range(14):
        date = f"202611{day + 1:02d}"
        tids = [f"{date}-" + "X" * 70 + f"-{i}" for i in range(3)]
        events = s.send(date, tids, source=source, event_name="close_convert_lead_enterprise_q4",
                        currency=("EUR", "USD", "GBP")[day % 3], value=1234567.89)
        s.arrive(events, drop=frozenset(tids[:1]) if day % 4 == 0 else frozenset(), times=2 if day == 5 else 1)
    config = s.build()
    long_reason = "column 'Opportunity Analytics Consent Recorded By The Consent Management Platform' " * 3
    summary = {"mode": "send", "rows_in": 90, "sent": 42, "rejected": 30, "filtered": 18, "deferred": 0, "sources": {
        source: {"reject_reasons": [{"code": "VALUE_INVALID", "reason": long_reason, "rows": 30}],
                 "filtered_reasons": [{"code": "FILTERED", "reason": long_reason, "rows": 18}]}}}
    with open_ledger(config.ledger_path) as ledger:
        ledger.finish_run("run-1", json.dumps(summary))
    reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=datetime(2026, 11, 16, 12, tzinfo=UTC))
    report = tmp_path / "out" / "reconciliation.html"
    text = report.read_text(encoding="utf-8")
    assert "Top reject reasons (30 rows)" in text and "Opportunity Analytics Consent" in text
    assert scroll_width(report, tmp_path) <= 1280
