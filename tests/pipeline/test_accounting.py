"""What a person reads after `mpetl run`: every row in one bucket, filtered apart from rejected, the
equation and the notes printed on a terminal exactly as summary.json has them."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import orjson

from etl.accounting import Buckets
from tests.support import REPO, SAMPLES_NOW, pinned_clock_env, samples_config

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\r")


def _run_on_a_terminal(*args: str) -> tuple[int, str]:
    """`mpetl ARGS` with stdout on a pseudo-terminal 200 columns wide (what an analyst sees), the clock
    pinned to the samples' morning; returns (exit code, the text shown without terminal codes)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = pinned_clock_env({**os.environ, "MP_API_SECRET": "s", "COLUMNS": "200", "TERM": "xterm"})
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", *args], stdout=slave, stderr=subprocess.PIPE,
                            env=env, cwd=REPO)
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(master)
    proc.stderr.read()
    return proc.wait(timeout=240), _CSI.sub("", shown.decode("utf-8", "replace"))


def _won_rows(path: Path, stage_column: str, won: set[str]) -> tuple[int, list[dict[str, str]]]:
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    kept = [r for r in rows if r[stage_column] in won]
    return len(rows) - len(kept), kept


def test_a_sample_run_shows_what_was_filtered_apart_from_what_was_rejected(tmp_path):
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9")
    out = tmp_path / "out"
    code, shown = _run_on_a_terminal("run", "--config", str(config), "--out", str(out), "--dry-run", "--now", SAMPLES_NOW)
    assert code == 0, shown
    s = orjson.loads((out / "summary.json").read_bytes())

    # The filtered rows are the samples' deals that are not won, and won deals without analytics consent,
    # counted here straight from the CSV files.
    lost, won = _won_rows(REPO / "data/samples/crm/salesforce_opportunities.csv", "Stage", {"Closed Won"})
    salesforce = s["sources"]["salesforce"]
    assert salesforce["filtered_codes"] == {
        "NOT_A_CONVERSION": lost,
        "NO_CONSENT": sum(r["Analytics_Consent__c"] == "" for r in won),
        "CONSENT_DENIED": sum(r["Analytics_Consent__c"] == "Denied" for r in won),
    } == {"NOT_A_CONVERSION": 18, "NO_CONSENT": 12, "CONSENT_DENIED": 1}
    assert [f["reason"] for f in salesforce["filtered_reasons"]] == [
        "not a conversion: column 'Stage' is not a won stage (value not shown)",
        "no analytics consent recorded in column 'Analytics_Consent__c'; consent_default is 'deny'",
        "analytics consent is denied in column 'Analytics_Consent__c'",
    ]
    lost, won = _won_rows(REPO / "data/samples/crm/hubspot_deals.csv", "Deal Stage", {"Closed Won", "closedwon"})
    assert s["sources"]["hubspot"]["filtered_codes"] == {
        "NOT_A_CONVERSION": lost, "NO_CONSENT": sum(r["Analytics Consent"] == "" for r in won),
        "CONSENT_DENIED": sum(r["Analytics Consent"] == "No" for r in won)}
    assert s["filtered"] == sum(s["filtered_codes"].values()) == sum(x["filtered"] for x in s["sources"].values()) > 0

    # Rejected means bad data only: every reject is in rejects.ndjson, none of them a filter reason.
    rejects = [orjson.loads(line) for line in (out / "rejects.ndjson").read_bytes().splitlines()]
    assert len(rejects) == s["rejected"] > 0
    assert not {x["validationCode"] for r in rejects for x in r["reasons"]} & set(s["filtered_codes"])
    buckets = Buckets.from_summary(s, where="summary.json")
    assert buckets.balanced() and buckets.rows_in == s["rows_in"] == 273

    # On the terminal: the equation with filtered in it, and why rows were filtered.
    assert buckets.equation("would_send") in shown
    assert f"rows_in 273 == would_send {s['would_send']} + filtered {s['filtered']} + rejected {s['rejected']} + " in shown
    codes = ", ".join(f"{code} {rows}" for code, rows in s["filtered_codes"].items())
    assert f"filtered (not conversions, not errors): {codes}" in shown
    assert "NOT_A_CONVERSION 37" in codes  # 18 Salesforce and 16 HubSpot deals not won, 3 Shopify orders not paid


def test_a_future_row_is_rejected_whatever_until_selects_and_every_row_stays_in_the_equation(tmp_path):
    # The wall clock is the samples' morning (2026-11-21 06:00 UTC); the run re-does the night of the 19th.
    (tmp_path / "deals.csv").write_text(
        "cookie,session,closed,deal,amount,cur,Stage\n"
        "GA1.1.111.222,GS2.1.s1795132800$o1$g1$t1795132900$j0$l0$h0,2026-11-19 10:00:00,D1,10,EUR,Won\n"
        "GA1.1.111.223,not-a-session-cookie,2026-11-19 11:00:00,D2,10,EUR,Won\n"
        "GA1.1.111.224,,2026-11-20 09:00:00,D3,10,EUR,Won\n"  # after --until: another night's
        "GA1.1.111.225,,2026-11-24 09:00:00,D4,10,EUR,Won\n"  # three days after the wall clock
        "GA1.1.111.226,,2026-11-19 12:00:00,D5,10,EUR,Lost\n"
    )
    (tmp_path / "mpetl.toml").write_text(
        '[property]\nmeasurement_id = "G-ABC123"\ntimezone = "UTC"\n'
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite"}"\n'
        '[[sources]]\nname = "crm"\npath = "deals.csv"\nconsent_default = "grant"\n'
        '[sources.columns]\nclient_id = "cookie"\nsession_id = "session"\ntimestamp = "closed"\n'
        'transaction_id = "deal"\nvalue = "amount"\ncurrency = "cur"\n[sources.filter]\nStage = ["Won"]\n'
    )
    out = tmp_path / "out"
    code, shown = _run_on_a_terminal("run", "--config", str(tmp_path / "mpetl.toml"), "--out", str(out), "--dry-run",
                                     "--since", "2026-11-19T00:00:00Z", "--until", "2026-11-20T00:00:00Z")
    assert code == 0, shown
    s = orjson.loads((out / "summary.json").read_bytes())
    assert {k: s[k] for k in ("rows_in", "would_send", "filtered", "rejected", "outside_window")} == {
        "rows_in": 5, "would_send": 2, "filtered": 1, "rejected": 1, "outside_window": 1}
    (reject,) = [orjson.loads(line) for line in (out / "rejects.ndjson").read_bytes().splitlines()]
    assert reject["row"] == 4 and reject["reasons"] == [{
        "fieldPath": "events[0].timestamp_micros", "validationCode": "VALUE_OUT_OF_BOUNDS",
        "description": "column 'closed' is in the future (beyond 5 min of clock skew)"}]
    # The session cookie that could not be read: sent without a session, and said so.
    assert (s["no_session"], s["session_cookie_unparsed"]) == (1, 1)
    assert ("rows_in 5 == would_send 2 + filtered 1 + rejected 1 + duplicate 0 + deferred 0 + failed 0 + "
            "outside_window 1") in shown
    assert "filtered (not conversions, not errors): FILTERED 1" in shown
    assert "notes: no_session 1, session_cookie_unparsed 1" in shown
