"""The human-facing outputs: the HTML page and the notebook, read back as a person's tools would."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from etl.reconcile import reconcile
from tests.support import NOTEBOOK, run_notebook

from .builders import Scenario, ids

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class PageReader(HTMLParser):
    """Collects the verdict heading's text, image sources, and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.in_verdict = False
        self.verdict = ""
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h1" and a.get("id") == "verdict":
            self.in_verdict = True
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith("data:"):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self.in_verdict = False

    def handle_data(self, data: str) -> None:
        if self.in_verdict:
            self.verdict += data


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("A", 8)), drop=frozenset({"A-0002", "A-0005"}))
    s.arrive(s.send("20261116", ids("B", 4), has_session=False))
    s.arrive(s.send("20261121", ids("Y", 3)), drop=frozenset({"Y-0001"}))
    reconcile(s.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    return tmp_path / "out"


def test_html_states_the_verdict_and_embeds_the_plot(failed_run: Path) -> None:
    page = PageReader()
    page.feed((failed_run / "reconciliation.html").read_text(encoding="utf-8"))

    assert page.verdict.startswith("Not reconciled")
    assert page.external == []  # self-contained
    pngs = [src for src in page.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    text = (failed_run / "reconciliation.html").read_text(encoding="utf-8")
    assert "A-0002" in text and "A-0005" in text
    assert "<h2>Money per date and currency</h2>" in text
    assert "EUR sent 150.00, found 120.00, missing 30.00, duplicate 0.00" in text


def test_notebook_runs_against_generated_reports(failed_run: Path, tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameter_cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(parameter_cells) == 1 and 'RUN_DIR = "out/samples/reconcile"' in parameter_cells[0].source

    outputs = run_notebook(tmp_path, RUN_DIR=str(failed_run))  # papermill: raises on any failing cell

    assert "NOT_RECONCILED (exit code 3)" in outputs
    assert "A-0002" in outputs and "A-0005" in outputs
    assert outputs.count("image/png") >= 3  # events per day, value per day, sessions
    # 15 EUR-10 purchases sent; A-0002, A-0005 (final day) and Y-0001 missing: money beside the counts.
    assert "money EUR: sent / found / missing / duplicate" in outputs and "150.00 / 120.00 / 30.00 / 0.00" in outputs
    # The money table per date and currency, formatted: 2026-11-15's 80.00 sent, 60.00 found, 20.00 missing.
    money = outputs[outputs.index("money per date and currency"):]
    assert re.search(r"2026-11-15.{0,80}EUR.{0,80}80\.00.{0,80}60\.00.{0,80}20\.00", money)
    # What to do next names the real command: the missing events of run-1 are past the window here.
    assert "mpetl resend --config" in outputs and "--run-id run-1" in outputs


def test_html_shows_the_three_event_verdicts_and_an_unavailable_export(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("A", 4)), drop=frozenset({"A-0003"}))
    s.send("20261116", ids("B", 2))  # no export table for this date
    s.arrive(s.send("20261121", ids("Y", 2), sent_at=(NOW - timedelta(minutes=10)).isoformat()),
             drop=frozenset({"Y-0001"}))
    reconcile(s.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    page = PageReader()
    text = (tmp_path / "out" / "reconciliation.html").read_text(encoding="utf-8")
    page.feed(text)

    assert page.verdict.startswith("Not reconciled")  # a proven loss outranks the unjudged date
    assert "arrived / not yet arrived / missing / export not available" in text
    assert "<td>4 / 1 / 1 / 2</td>" in text
    assert "not_yet_arrived" in text and "absent" in text and "events_20261116" in text
