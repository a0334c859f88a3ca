"""The reconciliation page as a person sees it: opened in headless Chromium, verdict and plot visible."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image

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
    assert "Reconciled: every event sent was found in the export." in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,1600", page],
                   capture_output=True, timeout=60, check=True)
    pixels = image.imread(shot)[..., :3]
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # The plot's "found" bars are orange: only a decoded, displayed PNG puts them on screen.
    orange = (red > 0.85) & (green > 0.4) & (green < 0.65) & (blue < 0.3)
    assert np.count_nonzero(orange) > 2_000
