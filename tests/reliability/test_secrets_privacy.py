"""Nothing leaked: the API secret reaches no file, log or output; planted personal data is never sent.

Every mode runs with a sentinel secret (with characters that URL-encoding changes, so the encoded
form is looked for too) and a generic CSV whose every column holds sentinel emails, phones and names.
Then every byte the job wrote (outputs, the ledger and its WAL as raw bytes, the collector's store)
and everything it printed is scanned.
"""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import quote, quote_plus

from tests.reliability.harness import (
    GENERATED_COLUMNS,
    SAMPLES_NOW,
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    reconcile_args,
    run_args,
)
from tests.support import files_containing

SECRET = "SENTINEL-SECRET-7f3a9+/=x"
SECRET_FORMS = sorted({SECRET, quote(SECRET, safe=""), quote_plus(SECRET)})
EMAIL = "pii.sentinel.7f3a9@example.org"
PHONE = "+1 202-555-0173"
PHONE_DIGITS = "2025550173"
NAME = "Sentinella Pillsbury-Quorn"
ADDRESS = "42 Sentinel Lane, Quornfield"
# Only what a pattern can recognise can be kept out of a free-text id (a name is a valid coupon or
# transaction id); names are planted in every column whose format excludes them.
PATTERN_PII = (EMAIL, PHONE)
PII_NEEDLES = (EMAIL, "pii.sentinel.7f3a9", PHONE, PHONE_DIGITS, "202-555-0173", NAME, "Pillsbury", ADDRESS)

COLUMNS = {**GENERATED_COLUMNS, "user_id": "Customer No", "consent_analytics": "Consent"}  # canonical → header
PARAMS = {"coupon": "Coupon", "affiliation": "Affiliation"}
UNMAPPED = ("Customer", "Email", "Phone", "Address", "Notes")
HEADER = [*COLUMNS.values(), *PARAMS.values(), *UNMAPPED]
FREE_TEXT = {"Order ID", "Customer No", "Coupon", "Affiliation"}


def _row(n: int, *, when: str = "2026-11-20 10:00:00", **cells: str) -> list[str]:
    clean = {"GA Cookie": f"GA1.1.{5000 + n}.1749482504", "GA Session": "1795000000", "Closed At": when,
             "Order ID": f"PRIV-{n:03d}", "Amount": "19.99", "Currency": "EUR", "Customer No": f"CUST-{n}",
             "Consent": "yes", "Coupon": "WINTER", "Affiliation": "web", "Customer": NAME, "Email": EMAIL,
             "Phone": PHONE, "Address": ADDRESS, "Notes": f"call {NAME} on {PHONE} or {EMAIL}"}
    return [{**clean, **cells}[h] for h in HEADER]


def _planted_rows() -> list[list[str]]:
    rows = [_row(n) for n in range(5)]  # clean mapped columns, PII in every unmapped one
    rows += [_row(5 + n, when="2026-11-10 10:00:00") for n in range(3)]  # deferred: old, for Data Import
    n = 10
    for column in [*COLUMNS.values(), *PARAMS.values()]:
        for value in (*PATTERN_PII, f"ref {EMAIL}", f"tel {PHONE}") + (() if column in FREE_TEXT else (NAME,)):
            rows.append(_row(n, **{column: value}))
            n += 1
    return rows


def _source(path: Path) -> dict:
    return {"name": "planted", "kind": "csv", "path": str(path), "event": "purchase", "timezone": "UTC",
            "consent_default": "deny", "send_user_id": True, "columns": dict(COLUMNS), "params": dict(PARAMS)}


def test_no_secret_anywhere_and_no_planted_personal_data_in_anything_sent(tmp_path, collector, closed_port):
    rows = _planted_rows()
    with (tmp_path / "planted.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([HEADER, *rows])
    server = collector(secret=SECRET)
    config = config_for(tmp_path, [_source(tmp_path / "planted.csv")], endpoint=server.url)
    (tmp_path / "down").mkdir()
    down = config_for(tmp_path / "down", [_source(tmp_path / "planted.csv")],
                      endpoint=f"http://127.0.0.1:{closed_port}", max_attempts=2)
    outputs = {}

    def step(name: str, args: list[str], codes: tuple[int, ...]) -> None:
        done = cli(*args, secret=SECRET)
        assert_no_traceback(done.stdout, done.stderr)
        assert done.code in codes, f"{name}: exit {done.code}: {done.stderr[-1500:]}"
        outputs[name] = done

    step("dry-run", run_args(config, tmp_path / "out" / "dry", "--dry-run"), (0,))
    step("send", run_args(config, tmp_path / "out" / "send"), (0,))
    step("validate", ["validate", "--config", str(config), "--out", str(tmp_path / "out" / "validate"),
                      "--debug-endpoint", "--now", SAMPLES_NOW], (0,))
    step("reconcile", reconcile_args(config, tmp_path / "out" / "reconcile"), (0, 3))
    step("sources", ["sources", "--config", str(config), "--now", SAMPLES_NOW], (0,))
    step("endpoint down", run_args(down, tmp_path / "down" / "out"), (4,))

    # Something was actually sent and stored, and every planted row was accounted for.
    send_summary = outputs["send"].summary(tmp_path / "out" / "send")
    assert balanced(send_summary) and send_summary["rows_in"] == len(rows)
    assert send_summary["sent"] >= 5 and send_summary["deferred"] == 3
    assert "Connect" in outputs["endpoint down"].summary(tmp_path / "down" / "out")["send"]["last_error"]["message"]
    store_files = list(server.data_dir.glob("events_*.ndjson"))
    assert store_files

    # The secret: in no file under the job's folders (SQLite pages and WAL included) and in no output.
    printed = "".join(o.stdout + o.stderr for o in outputs.values())
    for form in SECRET_FORMS:
        assert files_containing(tmp_path, form) == [], form
        assert form not in printed, form
        assert form not in server.read_log()

    # Personal data: nowhere in what was sent or stored, in rejects, reports, summaries, or logs.
    sent_or_reported = [*store_files, *(tmp_path / "out").rglob("requests.ndjson"),
                        *(tmp_path / "out").rglob("rejects.ndjson"), *(tmp_path / "out").rglob("summary.json"),
                        *(tmp_path / "out").rglob("privacy_manifest.json"), *(tmp_path / "out").rglob("deferred*.csv"),
                        *(tmp_path / "out" / "reconcile").rglob("*")]
    assert any(p.name == "requests.ndjson" for p in sent_or_reported)
    for needle in PII_NEEDLES:
        leaked = [str(p.relative_to(tmp_path)) for p in sent_or_reported if p.is_file() and needle.encode() in p.read_bytes()]
        assert leaked == [], f"{needle!r} found in {leaked}"
        assert needle not in printed, f"{needle!r} printed by the job"
