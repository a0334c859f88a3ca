"""Issue 23's personal-data forms as one table, run against every free-text param a row can carry.

One row per form. The same table goes (1) through the detector, which must name the form's detector;
(2) through ``transform_chunk`` in every free-text path — coupon, transaction_id, item_name and other item
fields, user_id, a declared text param — with ``on_pii = "reject"`` and ``"drop"``: the row is rejected, or
(where the field may be dropped) sent without it, and the value is in no event; (3) through a real
``mpetl run --dry-run``: the value is in no file of the run's output folder and in none of its logs.
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import replace
from pathlib import Path

import orjson
import pandas as pd
import pytest

from etl.transform import TransformOptions, transform_chunk
from etl.transform.privacy import detect_personal_data
from tests.reliability.harness import GENERATED_COLUMNS, assert_no_traceback, balanced, cli, generic_source, run_args
from tests.support import samples_config
from tests.transform.test_events import NOW_MICROS, PROP, SOURCE, WINDOW, Chunk

EMAIL = "jane.doe@example.com"
PHONE = "+4915123456789"


def _b64(text: str, *, pad: bool = False, url: bool = False) -> str:
    encoded = (base64.urlsafe_b64encode if url else base64.b64encode)(text.encode()).decode()
    return encoded if pad else encoded.rstrip("=")


def _b32(text: str) -> str:
    return base64.b32encode(text.encode()).decode().rstrip("=")


# (form, value, detector)
FORMS: list[tuple[str, str, str]] = [
    # obfuscated emails
    ("at/dot words", "jane dot doe at example dot com", "email"),
    ("at/dot words, capitals, two-part TLD", "JANE AT EXAMPLE DOT CO DOT UK", "email"),
    ("(at)(dot)", "jane(at)example(dot)com", "email"),
    ("[at][dot] spaced", "jane [at] example [dot] com", "email"),
    ("{at} with a real dot", "jane{at}example.com", "email"),
    ("<at>", "jane<at>example.org", "email"),
    ("HTML entity &#64;", "jane&#64;example.com", "email"),
    ("HTML entity &#x40;", "jane&#x40;example.com", "email"),
    ("HTML entity &commat;", "jane&commat;example.com", "email"),
    ("full-width @ and dot", "jane\uff20example\uff0ecom", "email"),
    ("small commercial at", "jane\ufe6bexample.com", "email"),
    ("spaces around @", "jane @ example.com", "email"),
    ("space after @", "mail jane@ example.com", "email"),
    ("quoted local part", '"jane doe"@example.com', "email"),
    ("bracketed address", "<jane.doe@example.com>", "email"),
    ("URL-encoded @ and dot", "jane%40example%2Ecom", "email"),
    # national phone formats
    ("030/1234567", "030/1234567", "phone"),
    ("030 / 1234567", "030 / 1234567", "phone"),
    ("(030) 123 45 67", "(030) 123 45 67", "phone"),
    ("grouped 0171 234 5678", "0171 234 5678", "phone"),
    ("dotted 0171.234.5678", "0171.234.5678", "phone"),
    ("nine digits after trunk 0", "030 123 456", "phone"),
    ("+49 grouped", "+49 30 1234567", "phone"),
    ("+49 (0)", "+49 (0)30 1234567", "phone"),
    ("+49 slashes", "+49/30/1234567", "phone"),
    ("phone word glued", "Tel:030 1234567", "phone"),
    ("phone word, bare digits", "tel. 01711234567", "phone"),
    # cards
    ("13-digit card grouped", "4222 2222 2222 2", "payment_card"),
    ("13-digit card after a card word", "Visa 4222222222222", "payment_card"),
    ("card with underscores", "4111_1111_1111_1111", "payment_card"),
    ("card with slashes", "4111/1111/1111/1111", "payment_card"),
    ("mastercard with underscores", "5555_5555_5555_4444", "payment_card"),
    # IBANs
    ("IBAN grouped", "DE89 3704 0044 0532 0130 00", "iban"),
    ("IBAN plain", "DE89370400440532013000", "iban"),
    ("IBAN lower case", "gb82 west 1234 5698 7654 32", "iban"),
    ("IBAN with a letter group", "FR14 2004 1010 0505 0001 3M02 606", "iban"),
    # national ids
    ("SSN after a word", "SSN 123456789", "us_ssn"),
    ("SSN after 'social security no.'", "social security no. 219099999", "us_ssn"),
    ("SSN glued to ssn:", "ssn:078051120", "us_ssn"),
    ("UK NI plain", "AB123456C", "uk_national_insurance"),
    ("UK NI spaced", "AB 12 34 56 C", "uk_national_insurance"),
    ("UK NI lower case", "ab123456d", "uk_national_insurance"),
    # IP addresses
    ("zero-padded IPv4", "010.001.002.003", "ipv4"),
    ("zero-padded IPv4, partly", "192.168.001.010", "ipv4"),
    ("defanged IPv4", "10[.]0[.]0[.]1", "ipv4"),
    # digests with separators
    ("SHA-256 in dashed groups of 8", "-".join(["a1b2c3d4"] * 8), "hashed_identifier"),
    ("MD5 in colon pairs", ":".join(["9e"] * 16), "hashed_identifier"),
    ("SHA-1 in spaced quads", " ".join(["c0ff"] * 10), "hashed_identifier"),
    # encoded emails and phones
    ("base64 email, unpadded", _b64(EMAIL), "encoded_personal_data"),
    ("base64 email, padded", _b64("jane@example.com", pad=True), "encoded_personal_data"),
    ("base64url email, unpadded", _b64("jane.doe+tag@example.co.uk", url=True), "encoded_personal_data"),
    ("base64 text holding an email", _b64("Kontakt: " + EMAIL), "encoded_personal_data"),
    ("base64 phone, unpadded", _b64(PHONE), "encoded_personal_data"),
    ("base32 email, unpadded", _b32(EMAIL), "encoded_personal_data"),
    ("base32 phone, unpadded", _b32(PHONE), "encoded_personal_data"),
    ("base32 email, lower case", _b32(EMAIL).lower(), "encoded_personal_data"),
    ("base64 of base64 of an email", base64.b64encode(_b64(EMAIL, pad=True).encode()).decode(), "encoded_personal_data"),
    ("encoded, inside text", f"ref {_b64(EMAIL)} thanks", "encoded_personal_data"),
]
IDS = [form for form, _, _ in FORMS]


@pytest.mark.parametrize(("form", "value", "detector"), FORMS, ids=IDS)
def test_each_form_is_named_by_its_detector(form: str, value: str, detector: str) -> None:
    found = detect_personal_data(pd.Series([value, f"note: {value}", f"{value}, thanks"]))
    assert found.tolist() == [detector] * 3


# --- every free-text path through transform_chunk ------------------------------------------------------------

# path -> (the column it is read from, whether on_pii = "drop" may drop it, how the value is placed)
PATHS = {
    "coupon": ("param.coupon", True, lambda v: v),
    "declared text param": ("param.order_note", True, lambda v: v),
    "transaction_id": ("transaction_id", False, lambda v: v),
    "user_id": ("user_id", False, lambda v: v),
    "item_name": ("items", False, lambda v: json.dumps([{"item_id": "SKU1", "item_name": v, "price": 5, "quantity": 1}])),
    "item_brand": ("items", False, lambda v: json.dumps([{"item_id": "SKU1", "item_brand": v, "price": 5, "quantity": 1}])),
    "item coupon": ("items", False, lambda v: json.dumps([{"item_id": "SKU1", "item_variant": "red", "coupon": v}])),
    "item_id": ("items", False, lambda v: json.dumps([{"item_id": v, "price": 5, "quantity": 1}])),
}
EXTRA = {"purchase": ["order_note"]}


def _frame(path: str) -> pd.DataFrame:
    column, _, place = PATHS[path]
    rows = []
    for i, (_, value, _) in enumerate(FORMS):
        row = {"client_id": "GA1.1.1162820436.1749482504", "session_id": "GS2.1.s1763650000$o3$g1$t1763650100$j0$l0$h0",
               "timestamp": "2026-11-20 14:03:11", "transaction_id": f"T-{i:04d}", "value": "49.99", "currency": "EUR",
               "user_id": f"CUST-{i:04d}"}
        row[column] = place(value)
        rows.append(row)
    frame = pd.DataFrame(rows).astype("string")
    frame.insert(0, "row", pd.Series(range(1, len(rows) + 1), dtype="int64"))
    return frame


def _leaks(text: str, value: str) -> bool:
    return value in text or json.dumps(value)[1:-1] in text


@pytest.mark.parametrize("on_pii", ["reject", "drop"])
@pytest.mark.parametrize("path", list(PATHS))
def test_every_form_is_kept_out_of_every_free_text_path(path: str, on_pii: str) -> None:
    column, droppable, _ = PATHS[path]
    source = replace(SOURCE, on_pii=on_pii, send_user_id=True, params={"coupon": "Coupon", "order_note": "Note"})
    result = transform_chunk(Chunk(frame=_frame(path)), TransformOptions(source=source, prop=PROP, window=WINDOW,
                                                                         wall_micros=NOW_MICROS, extra_params=EXTRA))
    sent = dict(zip(result.events["row"], result.events.to_dict("records"), strict=True))
    rejected = {row: reasons for row, reasons in zip(result.rejects["row"], result.rejects["reasons"], strict=True)}
    assert set(sent) | set(rejected) == set(range(1, len(FORMS) + 1)) and not set(sent) & set(rejected)
    param = column.removeprefix("param.")
    for row, (form, value, detector) in enumerate(FORMS, start=1):
        if droppable and on_pii == "drop":
            assert row in sent, f"{form}: the row should be sent without its {path}"
            assert param not in orjson.loads(sent[row]["event_json"])["params"], form
        else:
            assert row in rejected, f"{form}: not caught in {path}"
            (reason,) = [r for r in rejected[row] if r["validationCode"] == "PERSONAL_DATA"]
            if column != "items":
                assert f"detector: {detector})" in reason["description"], (form, reason)
            assert not _leaks(json.dumps(rejected[row]), value), form
    for record in sent.values():
        for _, value, _ in FORMS:
            assert not _leaks(record["event_json"], value) and record.get("user_id") != value
    detectors = result.tally.detectors
    assert sum(detectors.values()) == len(FORMS) and set(detectors) == {d for _, _, d in FORMS}


# --- through a real dry run ------------------------------------------------------------------------------------

CLI_HEADER = [*GENERATED_COLUMNS.values(), "Coupon", "Note", "Items", "Customer"]
CLI_PATHS = {"coupon": "Coupon", "declared text param": "Note", "transaction_id": "Order ID", "user_id": "Customer",
             "item_name": "Items"}


def _write_cli_input(path: Path) -> int:
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLI_HEADER)
        for p, (name, header) in enumerate(CLI_PATHS.items()):
            for i, (_, value, _) in enumerate(FORMS):
                cells = {"GA Cookie": f"GA1.1.{1000 + i}.1749482504", "GA Session": "1795000000",
                         "Closed At": "2026-11-20 10:00:00", "Order ID": f"P{p}-{i:04d}", "Amount": "10.00",
                         "Currency": "EUR", "Coupon": "", "Note": "", "Items": "", "Customer": f"CUST-{p}-{i}"}
                cells[header] = PATHS[name][2](value)
                writer.writerow([cells[h] for h in CLI_HEADER])
                rows += 1
    return rows


@pytest.mark.parametrize("on_pii", ["reject", "drop"])
def test_no_form_reaches_any_file_or_log_of_a_dry_run(tmp_path: Path, on_pii: str) -> None:
    rows = _write_cli_input(tmp_path / "in.csv")
    source = generic_source(tmp_path / "in.csv", on_pii=on_pii, send_user_id=True,
                            params={"coupon": "Coupon", "order_note": "Note"})
    source["columns"] |= {"items": "Items", "user_id": "Customer"}
    config = samples_config(tmp_path, endpoint="local", sources=[source], privacy={"extra_params": EXTRA})
    out = tmp_path / "out"
    run = cli(*run_args(config, out, "--dry-run", "-v"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(out)
    droppable = 2 * len(FORMS)  # coupon and the declared param
    assert balanced(summary) and summary["rows_in"] == rows
    assert summary["would_send"] == (droppable if on_pii == "drop" else 0)
    assert summary["rejected"] == rows - summary["would_send"]
    files = {p.name: p.read_bytes().decode("utf-8", errors="replace") for p in out.rglob("*") if p.is_file()}
    assert {"requests.ndjson", "rejects.ndjson", "summary.json"} <= set(files)
    files["stdout+stderr"] = run.stdout + run.stderr
    leaks = [(form, name) for form, value, _ in FORMS for name, text in files.items() if _leaks(text, value)]
    assert leaks == []
