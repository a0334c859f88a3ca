"""Hostile input: whatever bytes arrive, the run ends with balanced accounting and a clear outcome.

The documented outcomes for a bad file are a `SourceError` (the source is skipped, exit 2, nothing
from it sent) or per-row rejects with reasons; never a traceback, never a cell value in a message,
and never a CSV cell a spreadsheet would evaluate as a formula.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import gzip
import http.server
import io
import re
import struct
import tempfile
import threading
import time
import zlib
import zoneinfo
from pathlib import Path

import orjson
import pandas as pd
import psutil
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.config import load_config
from etl.errors import EXIT_STOPPED
from etl.load.transport import Answer, HttpTransport
from etl.pipeline import RunOptions, run_pipeline
from etl.transform.identity import client_id_from_ga_cookie, session_id_from_ga_cookie
from etl.transform.timestamps import to_utc_micros
from tests.reconcile.builders import export_row, write_store
from tests.reliability.harness import (
    GENERATED_COLUMNS,
    NOW,
    Finished,
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    generic_source,
    reconcile_args,
    run_args,
    start,
    stored_events,
    write_orders,
)
from tests.support import samples_config

HEADER = [*GENERATED_COLUMNS.values(), "Zone", "Notes"]
MARKER = "Qx7"  # every fuzzed cell carries it, so a message quoting a cell is caught
FORMULAS = ("=cmd|' /C calc'!A0", "+1+1", "@SUM(1)", "-2+3", "=HYPERLINK(\"http://x\")")
_TRIGGER = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NEGATIVE = re.compile(r"^-\d+(\.\d+)?$")

# --- the whole pipeline, fuzzed ---------------------------------------------------------------------

_valid_cells = {
    "GA Cookie": st.sampled_from(["GA1.1.1162820436.1749482504", "_ga=GA1.2.55.66", "1.2", ""]),
    "GA Session": st.sampled_from(["GS1.1.1795000000.3.1.1795000100.0.0.0", "1795000000", ""]),
    "Closed At": st.sampled_from(["2026-11-20 10:00:00", "20.11.2026 10:00", "2026-11-10T10:00:00Z", "11/20/2026 3:04 PM"]),
    "Order ID": st.from_regex(r"[A-Z]{2}-[0-9]{1,5}", fullmatch=True),
    "Amount": st.sampled_from(["10.00", "1234.5", "-3", "0", ""]),
    "Currency": st.sampled_from(["EUR", "usd", "XXX", ""]),
    "Zone": st.sampled_from(["", "UTC", "Europe/Berlin", "America/New_York"]),
    "Notes": st.just(""),
}
_nasty_text = st.text(alphabet=st.sampled_from(list(',;"\'\n\r\t\x00 =+-@%$.:/\\0123456789aZé€\ufeff\u2028')),
                      max_size=40)


@st.composite
def _cell(draw: st.DrawFn, column: str) -> str:
    kind = draw(st.integers(0, 9))
    if kind < 5:
        return draw(_valid_cells[column])
    if kind < 8:
        return MARKER + draw(_nasty_text)
    return MARKER + draw(st.text(max_size=30))


@st.composite
def _csv_bytes(draw: st.DrawFn) -> bytes:
    """Mostly well-formed CSV with hostile cells; sometimes broken rows, raw joins or plain noise."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.binary(max_size=400))
    header = list(HEADER)
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        row = [draw(_cell(c)) for c in header]
        if draw(st.integers(0, 15)) == 0:
            row = row[: draw(st.integers(0, len(row)))] if draw(st.booleans()) else [*row, MARKER]
        rows.append(row)
    if shape == 1:  # no quoting at all: delimiters and quotes inside cells break the structure
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *rows])
        text = buffer.getvalue()
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"])))


def _run_dry(tmp: Path, content: bytes) -> tuple[dict, str, Path]:
    (tmp / "in.csv").write_bytes(content)
    source = generic_source(tmp / "in.csv")
    source["columns"]["timezone"] = "Zone"
    config = load_config(config_for(tmp, [source]))
    out = tmp / "out"
    logs = io.StringIO()
    with contextlib.redirect_stderr(logs):
        result = run_pipeline(config, RunOptions(out_dir=out, mode="dry-run", now=NOW, chunk_rows=5))
    assert result.exit_code == result.summary["exit_code"]
    return result.summary, logs.getvalue(), out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=_csv_bytes())
def test_fuzzed_csv_through_the_whole_pipeline_stays_balanced(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary, logs, out = _run_dry(Path(tmp), content)  # any exception fails the example
        assert summary["exit_code"] in (0, 2)
        assert balanced(summary)
        requests = (out / "requests.ndjson").read_bytes().splitlines() if (out / "requests.ndjson").exists() else []
        assert sum(len(orjson.loads(line)["events"]) for line in requests) == summary["would_send"]
        rejects = (out / "rejects.ndjson").read_bytes()
        assert len(rejects.splitlines()) == summary["rejected"]
        index = out / "deferred_index.csv"
        assert (len(pd.read_csv(index, dtype=str)) if index.exists() else 0) == summary["deferred"]
        if summary["exit_code"] == 2:  # a structural problem: the source is skipped whole, nothing sent
            assert summary["source_errors"] and summary["rows_in"] == 0 and not requests
        # Messages name file, row and column, never the cell.
        for text in (rejects.decode(), orjson.dumps(summary["source_errors"]).decode(), logs):
            assert MARKER not in text


# --- the parsers, fuzzed ------------------------------------------------------------------------

_CLIENT_ID = re.compile(r"\d{1,20}\.\d{1,20}")
_SESSION_ID = re.compile(r"\d{1,18}")
_cookie_noise = st.one_of(
    st.none(), st.text(max_size=60), st.integers(), st.floats(), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.builds(lambda a, b, wrap: wrap.format(f"GA1.1.{a}.{b}"), st.integers(0, 10**25), st.integers(0, 10**25),
              st.sampled_from(["{}", "_ga={}", '"{}"', " {} ", "{}%2E", "{}\x00", "GS2.1.s{}"])),
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_cookie_noise, max_size=30))
def test_cookie_parsers_return_an_id_or_na_never_raise(values: list[object]) -> None:
    series = pd.Series(values, dtype=object, index=range(100, 100 + len(values)))
    for parse, pattern in ((client_id_from_ga_cookie, _CLIENT_ID), (session_id_from_ga_cookie, _SESSION_ID)):
        found = parse(series)
        assert list(found.index) == list(series.index)
        assert all(pd.isna(v) or pattern.fullmatch(v) for v in found), list(found)


@given(random_part=st.integers(1, 10**12), ts=st.integers(10**9, 2 * 10**9),
       wrap=st.sampled_from(["{}", "_ga={}", '"{}"', "  {}\t", "_ga%3D{}"]), counter=st.sampled_from(["1", "2", "1-2"]))
def test_cookie_parser_recovers_the_client_id_from_every_documented_form(random_part, ts, wrap, counter) -> None:
    cookie = wrap.format(f"GA1.{counter}.{random_part}.{ts}")
    assert client_id_from_ga_cookie(pd.Series([cookie])).iloc[0] == f"{random_part}.{ts}"


_ZONES = sorted(zoneinfo.available_timezones())
# Real zone names, the folders they live in ("Europe", "America": what a vendor's region column may
# hold), and noise: a per-row zone is a cell like any other.
_zone_cells = st.one_of(st.none(), st.sampled_from(_ZONES), st.sampled_from(sorted({z.split("/")[0] for z in _ZONES})),
                        st.text(max_size=20), st.text(alphabet="x", min_size=250, max_size=300))


@st.composite
def _timestamp_texts(draw: st.DrawFn) -> str | None:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.text(max_size=40))
    moment = draw(st.datetimes())
    layout = draw(st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%d.%m.%Y %H:%M", "%m/%d/%Y %I:%M %p",
                                   "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S+14:00", "%Y-%m-%dT%H:%M:%S.%f-0930"]))
    return moment.strftime(layout) + draw(st.sampled_from(["", " ", "\x00", "Z", " GMT"]))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_timestamp_parser_never_raises_on_any_cell_or_zone(data: st.DataObject) -> None:
    texts = data.draw(st.lists(_timestamp_texts(), max_size=20))
    zones = data.draw(st.lists(_zone_cells, min_size=len(texts), max_size=len(texts)))
    values = pd.Series(texts, dtype=object)
    micros = to_utc_micros(values, default_zone="Europe/London", zones=pd.Series(zones, dtype=object))
    assert str(micros.dtype) == "Int64" and len(micros) == len(values)


@given(moment=st.datetimes(min_value=pd.Timestamp("1971-01-01").to_pydatetime(),
                           max_value=pd.Timestamp("2200-01-01").to_pydatetime()))
def test_timestamp_parser_is_exact_for_utc_iso_text(moment) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    expected = int(pd.Timestamp(moment, tz="UTC").value // 1000)
    assert to_utc_micros(pd.Series([text]), default_zone="Asia/Tokyo").iloc[0] == expected


# --- hostile cells, through the CLI ------------------------------------------------------------------

def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


def _row(tid: str, *, when: str = "2026-11-20 10:00:00", cookie: str = "GA1.1.1162820436.1749482504",
         amount: str = "10.00", currency: str = "EUR", session: str = "1795000000", zone: str = "",
         notes: str = "") -> list[str]:
    return [cookie, session, when, tid, amount, currency, zone, notes]


def _hostile_source(path: Path) -> dict:
    source = generic_source(path)
    source["columns"]["timezone"] = "Zone"
    return source


def test_huge_nul_and_mistyped_cells_are_rejected_by_column_without_traceback(tmp_path) -> None:
    huge = "HUGE" + "9" * 1_000_000
    rows = [
        _row("OK-1"),
        _row(huge),                            # 1 MB transaction id
        _row("BIG-AMOUNT", amount=huge),       # 1 MB amount
        _row("BIG-COOKIE", cookie=huge),       # 1 MB cookie
        _row("BIG-TIME", when=huge),           # 1 MB timestamp
        _row("BIG-NOTE", notes=huge),          # 1 MB in an unmapped column: irrelevant to the event
        _row("NUL-COOKIE", cookie="GA1.1.1.2\x00HUGE"),
        _row("NUL-AMOUNT", amount="1\x000"),
        _row("TYPES-1", amount="ten", currency="123"),
        _row("TYPES-2", when="yesterday", session="abc"),
        _row("TYPES-3", cookie="HUGE-not-a-cookie", when="2026-13-45 25:61:00"),
    ]
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [generic_source(tmp_path / "in.csv")])  # Zone left unmapped: see below
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out")
    assert balanced(summary) and summary["rows_in"] == len(rows)
    rejects = {r["row"]: r["reasons"] for r in map(orjson.loads, (tmp_path / "out" / "rejects.ndjson").read_bytes().splitlines())}
    expected_columns = {2: "Order ID", 3: "Amount", 4: "GA Cookie", 5: "Closed At", 7: "GA Cookie", 8: "Amount",
                        9: "Amount", 10: "Closed At", 11: "GA Cookie"}
    for row, column in expected_columns.items():
        assert row in rejects, f"row {row} should be rejected"
        assert any(column in r["description"] for r in rejects[row]), rejects[row]
    assert summary["would_send"] == 2  # OK-1 and BIG-NOTE
    for name in ("rejects.ndjson", "summary.json", "requests.ndjson"):
        assert b"HUGE" not in (tmp_path / "out" / name).read_bytes(), name
    assert "HUGE" not in run.stdout + run.stderr


def test_per_row_zone_naming_a_zone_folder_is_a_reject_not_a_crash(tmp_path) -> None:
    """A region column holding "Europe" or "America" (folders of the tz database, not zones)."""
    rows = [_row("Z-1", zone="Europe"), _row("Z-2", zone="America"), _row("Z-3", zone="x" * 300),
            _row("Z-4", zone="Europe/Berlin")]
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [_hostile_source(tmp_path / "in.csv")])
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0
    summary = run.summary(tmp_path / "out")
    assert balanced(summary) and summary["would_send"] == 1 and summary["rejected"] == 3


def test_a_file_of_several_read_blocks_with_a_per_row_zone_column_is_read(tmp_path) -> None:
    """Over 4 MB the reader hands the transform multi-chunk Arrow columns; the zone column must cope."""
    rows = [_row(f"BLOCK-{i}", zone="Europe/Berlin", notes="n" * 1_000_000) for i in range(5)]
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [_hostile_source(tmp_path / "in.csv")])
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0
    summary = run.summary(tmp_path / "out")
    assert balanced(summary) and summary["would_send"] == len(rows)


def test_timestamp_parser_accepts_multi_chunk_arrow_columns() -> None:
    def chunked(*parts: list[str]) -> pd.Series:
        return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(p) for p in parts])))

    values = chunked(["2026-11-20 10:00:00"] * 2, ["2026-11-20 10:00:00"])
    zones = chunked(["Europe/Berlin", "UTC"], ["America/New_York"])
    micros = to_utc_micros(values, default_zone="UTC", zones=zones)
    base = int(pd.Timestamp("2026-11-20 10:00:00", tz="UTC").value // 1000)
    assert micros.tolist() == [base - 3_600_000_000, base, base + 5 * 3_600_000_000]


def test_a_ten_thousand_column_header_is_a_clear_error_or_works(tmp_path) -> None:
    """Without the mapped headers: a one-line error naming the column; with them: the file is read.

    The header line here is ~79 kB, longer than the 64 KiB sample the reader inspects first.
    """
    wide = [f"col{i}" for i in range(10_000)]
    _write(tmp_path / "wide.csv", wide, [["x"] * len(wide)])
    _write(tmp_path / "wide_mapped.csv", [*HEADER, *wide], [_row("W-1") + ["x"] * len(wide)])
    config = config_for(tmp_path, [generic_source(tmp_path / "wide.csv", name="wide"),
                                   _hostile_source(tmp_path / "wide_mapped.csv") | {"name": "wide_mapped"}])
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 2
    summary = run.summary(tmp_path / "out")
    assert balanced(summary)
    [error] = summary["source_errors"]
    assert error["source"] == "wide" and "GA Cookie" in error["error"] and "10000 columns" in error["error"]
    assert summary["sources"]["wide_mapped"]["would_send"] == 1


def _csv_cells(folder: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    cells: list[str] = []
    for path in sorted(folder.rglob("*.csv")):
        if path.name in skip:
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            cells += [cell for row in csv.reader(handle) for cell in row]
    return cells


def _assert_neutralised(cells: list[str]) -> None:
    risky = [c for c in cells if _TRIGGER.match(c) and not _PLAIN_NEGATIVE.match(c)]
    assert not risky, f"cells a spreadsheet would evaluate: {risky[:5]}"
    for formula in FORMULAS:
        assert "'" + formula in cells, f"{formula!r} missing from the CSVs (or not prefixed)"


def test_formula_cells_are_neutralised_in_every_csv_the_run_writes(tmp_path) -> None:
    old = "2026-11-10 10:00:00"  # outside the 72 h window: deferred.csv for GA4 Data Import
    rows = [_row(f, when=old, cookie=f"GA1.1.{100 + i}.1749482504") for i, f in enumerate(FORMULAS)]
    rows += [_row("\t=1+1", when=old, cookie="GA1.1.7.1749482504"), _row("-12", when=old, cookie="GA1.1.8.1749482504")]
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [_hostile_source(tmp_path / "in.csv")])
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert run.code == 0, run.stderr[-2000:]
    assert run.summary(tmp_path / "out")["deferred"] == len(rows)
    # deferred.csv is read by GA4 Data Import, not a spreadsheet: its cells are exactly what was sent
    # (a guard's apostrophe would land in GA as part of the id); the index beside it, which people
    # open, is guarded.
    cells = _csv_cells(tmp_path / "out", skip=("deferred.csv",))
    _assert_neutralised(cells)
    assert "-12" in cells  # a plain negative number is data and stays as it is
    with (tmp_path / "out" / "deferred.csv").open(newline="", encoding="utf-8") as handle:
        for_ga = [cell for row in csv.reader(handle) for cell in row]
    assert set(FORMULAS) <= set(for_ga) and not any(c.startswith("'") for c in for_ga)


def test_formula_transaction_ids_are_neutralised_in_reconcile_reports(tmp_path, collector) -> None:
    server = collector(drop_rate=1.0)  # answers 204 and records nothing: every event is missing
    # The site's own tag was exported on those days, so the export can judge them (else: exit 6).
    write_store(server.data_dir, [export_row(f"WEB-{d}", d, run_marker=None) for d in ("20261119", "20261120", "20261121")])
    rows = [_row(f, cookie=f"GA1.1.{100 + i}.1749482504") for i, f in enumerate(FORMULAS)]
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [_hostile_source(tmp_path / "in.csv")], endpoint=server.url)
    run = cli(*run_args(config, tmp_path / "out"))
    assert run.code == 0 and run.summary(tmp_path / "out")["sent"] == len(rows), run.stderr[-2000:]
    report = cli(*reconcile_args(config, tmp_path / "reconcile"))
    assert_no_traceback(report.stdout, report.stderr)
    assert report.code == 3, report.stdout + report.stderr[-2000:]
    _assert_neutralised(_csv_cells(tmp_path / "reconcile"))


def test_a_zone_folder_in_the_config_is_a_one_line_config_error(tmp_path) -> None:
    """`timezone = "Europe"` (a folder of the tz database) must be named as a config error, exit 2."""
    config = samples_config(tmp_path, endpoint="local", property={"timezone": "Europe"})
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 2
    assert "property.timezone" in run.stderr and len(run.stderr.strip().splitlines()) == 1


# --- hostile endpoints: a gzip bomb -------------------------------------------------------------------------

def _gzip_bomb(inflated: int, block: int = 1 << 20) -> bytes:
    """A valid single-member gzip of `inflated` zero bytes (2 GB in ~2 MB), built without compressing 2 GB:
    after a full flush deflate forgets its window, so the compressed block of 1 MiB of zeros repeats."""
    zeros = bytes(block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated // block):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + again * (inflated // block - 1) + deflate.flush()
            + struct.pack("<II", crc, inflated & 0xFFFFFFFF))


class _AnswerWith(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""
    encoding = "gzip"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-encoding", self.encoding)
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client stops reading at its cap and closes
            for start in range(0, len(self.body), 1 << 16):
                self.wfile.write(self.body[start:start + (1 << 16)])

    def log_message(self, *args: object) -> None:
        return None


@contextlib.contextmanager
def _endpoint(body: bytes, encoding: str = "gzip"):
    handler = type("Handler", (_AnswerWith,), {"body": body, "encoding": encoding})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _post_watching_rss(url: str, *, debug: bool, times: int = 2) -> tuple[list[Answer], int]:
    """POST `times` requests; the answers and the largest RSS growth seen (sampled every 5 ms)."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()

    async def post() -> list[Answer]:
        transport = HttpTransport(url, "G-TESTSEND1", "s3cr3t", concurrency=1, timeout_s=60, debug=debug)
        try:
            return [await transport.post(b'{"events": []}') for _ in range(times)]
        finally:
            await transport.aclose()

    try:
        answers = asyncio.run(post())
    finally:
        done.set()
        watcher.join()
    return answers, peak[0] - baseline


_BOMB = functools.cache(lambda: _gzip_bomb(2 << 30))


@pytest.mark.parametrize("debug", [False, True], ids=["collect", "debug"])
def test_a_gzip_bomb_answer_keeps_its_status_and_costs_no_memory(debug: bool) -> None:
    """Two answers of 2 MB gzip inflating to 2 GB each (issue 23: RSS went to 6.5 GB). The status line is
    what MP counts, so the 200 stands (the events were taken); the debug endpoint's body is unreadable and
    says so; memory grows by less than 64 MB (the caps are 1 MiB sent and 4 MiB inflated)."""
    bomb = _BOMB()
    assert len(bomb) < 2_200_000
    with _endpoint(bomb) as url:
        answers, grew = _post_watching_rss(url, debug=debug)
    assert [a.status for a in answers] == [200, 200] and all(a.ok for a in answers)
    if debug:
        for answer in answers:
            [message] = answer.validation_messages
            assert "not read" in message["description"] and message["validationCode"] == "VALUE_INVALID"
    else:
        assert all(a.validation_messages is None for a in answers)
    assert grew < 64 << 20, f"RSS grew by {grew >> 20} MB"


def test_a_small_gzipped_debug_answer_is_still_read() -> None:
    payload = orjson.dumps({"validationMessages": [{"fieldPath": "events", "description": "bad name",
                                                    "validationCode": "NAME_INVALID"}]})
    with _endpoint(gzip.compress(payload)) as url:
        [answer], _ = _post_watching_rss(url, debug=True, times=1)
    assert answer.status == 200 and answer.validation_messages == orjson.loads(payload)["validationMessages"]
    with _endpoint(zlib.compress(b"x" * (8 << 20)), encoding="deflate") as url:  # 8 MiB inflated: over the cap
        [answer], _ = _post_watching_rss(url, debug=True, times=1)
    assert answer.status == 200 and "not read" in answer.validation_messages[0]["description"]
    with _endpoint(b"\x00\x01", encoding="br") as url:  # an encoding mpetl never asked for
        [answer], _ = _post_watching_rss(url, debug=True, times=1)
    assert answer.status == 200 and "not read" in answer.validation_messages[0]["description"]


# --- cells over max_field_bytes: the row goes, the file stays -------------------------------------------------

def _rejects_by_row(out: Path) -> dict[int, list[dict]]:
    return {r["row"]: r["reasons"] for r in map(orjson.loads, (out / "rejects.ndjson").read_bytes().splitlines())}


@pytest.mark.parametrize(("size", "column"), [(9 << 20, "Notes"), (2 << 20, "Order ID"), (9 << 20, "Amount")],
                         ids=["9MB-unmapped", "2MB-mapped", "9MB-mapped"])
def test_a_cell_over_the_cap_rejects_its_row_and_the_other_999_go_on(tmp_path, size, column) -> None:
    """Issue 23: one 9 MB cell lost its whole 1,000-row source with a message about quoting. Over pyarrow's
    4 MiB block the file is read again with the cell left out; under it the cell is blanked in the block."""
    rows = [_row(f"R-{i:04d}", cookie=f"GA1.1.{100 + i}.1749482504") for i in range(1000)]
    rows[499][HEADER.index(column)] = "Q" * size
    _write(tmp_path / "in.csv", HEADER, rows)
    config = config_for(tmp_path, [generic_source(tmp_path / "in.csv")])
    run = cli(*run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out")
    assert balanced(summary) and summary["rows_in"] == 1000 and summary["would_send"] == 999 and summary["rejected"] == 1
    reasons = _rejects_by_row(tmp_path / "out")[500]  # a blanked mapped cell also misses its rule (e.g. required)
    assert {"fieldPath": "events[0]", "validationCode": "VALUE_OUT_OF_BOUNDS",
            "description": f"column {column!r} holds a cell over max_field_bytes (1,048,576 bytes); the row was not read"
            } in reasons
    for name in ("rejects.ndjson", "summary.json", "requests.ndjson"):
        assert b"QQQQ" not in (tmp_path / "out" / name).read_bytes()


def _peak_rss_of(args: list[str]) -> tuple[Finished, int]:
    """Run the CLI, sampling the child's RSS every 20 ms; the result and the peak in bytes."""
    proc = start(*args)
    child = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, child.memory_info().rss)
        time.sleep(0.02)
    stdout, stderr = proc.communicate()
    return Finished(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")), peak


@pytest.mark.slow
def test_a_gzipped_file_holding_one_1gb_cell_is_read_in_bounded_memory(tmp_path) -> None:
    """Issue 23: a 4 MB .csv.gz with one 1 GB cell took 2.9 GB. Now the cell streams by (the reader holds at
    most max_field_bytes of it), its row is rejected, the rows around it are sent, RSS stays under 600 MB."""
    path = tmp_path / "in.csv.gz"
    with gzip.open(path, "wb", compresslevel=6) as handle:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(HEADER)
        writer.writerow(_row("BEFORE", cookie="GA1.1.1.1749482504"))
        handle.write(text.getvalue().encode())
        handle.write(b"GA1.1.2.1749482504,1795000000,2026-11-20 10:00:00,HUGE,10.00,EUR,,\"")
        block = b"0123456789abcdef" * (1 << 16)  # 1 MiB
        for _ in range(1024):
            handle.write(block)
        handle.write(b"\"\r\n")
        text = io.StringIO()
        csv.writer(text).writerow(_row("AFTER", cookie="GA1.1.3.1749482504"))
        handle.write(text.getvalue().encode())
    assert path.stat().st_size < 8 << 20
    config = config_for(tmp_path, [generic_source(path)])
    run, peak = _peak_rss_of(run_args(config, tmp_path / "out", "--dry-run"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out")
    assert balanced(summary) and summary["rows_in"] == 3 and summary["would_send"] == 2
    assert "'Notes' holds a cell over max_field_bytes" in _rejects_by_row(tmp_path / "out")[2][0]["description"]
    assert peak < 600 << 20, f"peak RSS {peak >> 20} MB"


# --- the run deadline covers every phase -------------------------------------------------------------------

def test_the_deadline_stops_a_slow_extract_and_the_next_run_sends_the_rest(tmp_path, collector) -> None:
    """Issue 23: `destination.deadline_s` started only with the send, so a slow read or plan ran past it.
    40,000 rows in chunks of 1,000 take seconds to read and plan; a 0.2 s deadline stops the run between
    chunks (exit 8, balanced, nothing sent), and the next run, unhurried, sends every row once."""
    server = collector()
    tids = write_orders(tmp_path / "orders.csv", prefix="SLOW", clients=400, per_client=100)
    source = generic_source(tmp_path / "orders.csv")
    hurried = config_for(tmp_path, [source], endpoint=server.url, deadline_s=0.2)
    run = cli(*run_args(hurried, tmp_path / "out1", "--chunk-rows", "1000"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == EXIT_STOPPED, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out1")
    assert summary["stopped"] == "deadline" and balanced(summary)
    assert summary["rows_in"] < len(tids) and summary["sent"] == 0
    relaxed = config_for(tmp_path, [source], endpoint=server.url)
    run = cli(*run_args(relaxed, tmp_path / "out2"), timeout=600)
    assert run.code == 0, run.stderr[-2000:]
    assert balanced(run.summary(tmp_path / "out2"))
    stored = stored_events(server.data_dir, "SLOW-")
    assert set(stored) == {("purchase", tid) for tid in tids} and set(stored.values()) == {1}
