"""`api = "data_manager"` end to end: the CLI as a process (its wall clock pinned), the local Data Manager endpoint.

A config switch moves the samples' night from MP to Data Manager with nothing else changed; the rows
Google would hold are the same; a rerun sends nothing; reconcile proves arrival. Bad credentials are one
line (exit 2) and nothing is sent; the token never reaches a file; Google's per-event refusals become
rejects with row and column; the daily quota leaves the rest planned and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import orjson

from etl.collector import FaultOptions, spawn_collector
from tests.datamanager.support import PROPERTY_ID, dm_destination, point_at, service_account
from tests.reliability.harness import (
    GENERATED_COLUMNS,
    MEASUREMENT_ID,
    NOW,
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    generic_source,
    ledger_counts,
    ledger_path,
    ledger_rows,
    reconcile_args,
    run_args,
    stored_events,
    write_orders,
)
from tests.support import samples_config

EXIT_BAD_INPUT, EXIT_STOPPED = 2, 8


def _rows(store: Path) -> list[dict]:
    """The store's rows, without what differs by run and receipt (the marker's value, the server offset, the
    time of a refund the export gives none: timed when the run first saw it, at its wall clock)."""
    out = []
    wall = int(NOW.timestamp()) * 1_000_000
    for f in sorted(store.glob("events_*.ndjson")):
        for line in f.read_bytes().splitlines():
            row = orjson.loads(line)
            row.pop("event_server_timestamp_offset")
            if row["event_timestamp"] >= wall:
                assert row["event_name"] == "refund"
                row["event_timestamp"] = "at the run's wall clock"
            row["event_params"] = sorted((p for p in row["event_params"] if p["key"] != "mpetl_run"), key=lambda p: p["key"])
            out.append(row)
    return sorted(out, key=lambda r: orjson.dumps(r))


def test_a_config_switch_moves_the_samples_night_to_data_manager(tmp_path):
    (tmp_path / "mp").mkdir()
    (tmp_path / "dm").mkdir()
    mp = samples_config(tmp_path / "mp", endpoint="local")
    dm = samples_config(tmp_path / "dm", endpoint="local",
                        destination={"api": "data_manager",
                                     "data_manager": {"quota_file": str(tmp_path / "dm" / "quota.json")}})
    by_mp = cli(*run_args(mp, tmp_path / "mp" / "out"))
    by_dm = cli(*run_args(dm, tmp_path / "dm" / "out"), secret="")  # no API secret: OAuth instead
    for run in (by_mp, by_dm):
        assert_no_traceback(run.stdout, run.stderr)
        assert run.code == 0, run.stderr[-2000:]
    a, b = by_mp.summary(tmp_path / "mp" / "out"), by_dm.summary(tmp_path / "dm" / "out")
    assert (a["api"], b["api"]) == ("measurement_protocol", "data_manager")
    buckets = ("rows_in", "sent", "rejected", "duplicate", "deferred", "expired", "rejected_at_send", "failed")
    assert {k: b[k] for k in buckets} == {k: a[k] for k in buckets} and a["sent"] > 100 and balanced(b)
    assert b["send"]["requests_sent"] == 1 < a["send"]["requests_sent"]  # every event of the night in one request
    assert b["data_manager"]["requests"] == 1 and b["data_manager"]["quota_taken_by_run"] == 1
    # What Google would hold is the same, value for value, whichever API carried it.
    assert _rows(tmp_path / "dm" / "state" / "collector") == _rows(tmp_path / "mp" / "state" / "collector")

    again = cli(*run_args(dm, tmp_path / "dm" / "out2"), secret="")
    assert again.code == 0 and again.summary(tmp_path / "dm" / "out2")["sent"] == 0
    proof = cli(*reconcile_args(dm, tmp_path / "dm" / "reconcile"))
    assert proof.code == 0, proof.stdout + proof.stderr
    assert f"sent {b['sent']}, arrived {b['sent']}, not yet arrived 0, missing 0" in proof.stdout


def test_bad_credentials_are_one_line_exit_2_and_nothing_is_sent(tmp_path):
    orders = tmp_path / "orders.csv"
    write_orders(orders, prefix="CRED", clients=3, per_client=1)
    trusted = service_account(tmp_path / "trusted.json")
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"type": "service_account", "private_key": ')
    not_google = tmp_path / "not-google.json"
    not_google.write_text('{"hello": "world"}')
    stranger = service_account(tmp_path / "stranger.json")  # a key the token endpoint does not trust
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret="unused-mp-secret",
                         now=NOW, dm_service_account=trusted, property_id=PROPERTY_ID) as server:
        point_at(stranger, server.url)
        cases = {
            tmp_path / "missing.json": "credentials file not found",
            malformed: "not usable Google credentials",
            not_google: "not usable Google credentials",
            stranger: "the token endpoint refused the credentials (invalid_grant",
        }
        for n, (credentials, words) in enumerate(cases.items()):
            work = tmp_path / f"case{n}"
            work.mkdir()
            config = config_for(work, [generic_source(orders)],
                                **dm_destination(server.url, credentials, work / "quota.json"))
            run = cli(*run_args(config, work / "out"), secret="")
            assert_no_traceback(run.stdout, run.stderr)
            assert run.code == EXIT_BAD_INPUT, (credentials, run.stderr)
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and words in lines[0] and str(credentials) in lines[0], lines
            assert not ledger_counts(ledger_path(work)).get("sent")  # checked before anything was planned
        assert server.stats()["dm_requests"] == 0 and stored_events(server.data_dir) == {}


def test_the_access_token_never_reaches_a_log_an_output_or_the_ledger(tmp_path):
    credentials = service_account(tmp_path / "dm" / "sa.json")
    orders = tmp_path / "orders.csv"
    tids = write_orders(orders, prefix="TOK", clients=40, per_client=1)
    # Tokens live 62 s and are refreshed a minute before they expire, so every 2 s; ten requests of 0.3 s
    # one at a time: the run refreshes its token on the way.
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret="unused-mp-secret",
                         now=NOW, dm_service_account=credentials, property_id=PROPERTY_ID, dm_token_ttl_s=62,
                         faults=FaultOptions(latency_ms=300)) as server:
        point_at(credentials, server.url)
        config = config_for(tmp_path, [generic_source(orders)], concurrency=1, **dm_destination(
            server.url, credentials, tmp_path / "dm" / "quota.json", max_events_per_request=4))
        run = cli(*run_args(config, tmp_path / "out", "-v"), secret="")
        assert run.code == 0, run.stderr[-2000:]
        log = server.read_log()
        assert server.stats()["tokens_issued"] >= 2 and server.stats()["dm_unauthorized"] == 0
        assert stored_events(server.data_dir) == {("purchase", t): 1 for t in tids}
    texts = [run.stdout, run.stderr, log] + [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*")
                                               if p.is_file() and p.name != "sa.json"]
    assert not [t for t in texts if "ya29." in t or "Bearer" in t or "PRIVATE KEY" in t]


def _orders_with_ages(path: Path, ages_h: list[float]) -> list[str]:
    tids = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERATED_COLUMNS.values())
        for i, age in enumerate(ages_h):
            moment = NOW - dt.timedelta(hours=age)
            tids.append(f"AGE-{i:03d}")
            writer.writerow([f"GA1.1.{2_000_000 + i}.1763000000", "", moment.strftime("%Y-%m-%d %H:%M:%S"), tids[-1],
                             "19.90", "EUR"])
    return tids


def test_events_google_refuses_become_rejects_with_row_and_column_the_rest_arrives(tmp_path):
    credentials = service_account(tmp_path / "dm" / "sa.json")
    orders = tmp_path / "orders.csv"
    # With no safety margin, events 72 h less 72 s old leave inside our window; Google's clock, 3 minutes
    # later than ours when it reads them, finds them past its 72 h.
    ages = [10, 71.98, 20, 71.98, 30, 40]
    tids = _orders_with_ages(orders, ages)
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret="unused-mp-secret",
                         now=NOW + dt.timedelta(minutes=3), dm_service_account=credentials,
                         property_id=PROPERTY_ID) as server:
        point_at(credentials, server.url)
        destination = {"backoff_base_s": 0.02, "backoff_max_s": 0.2,
                       **dm_destination(server.url, credentials, tmp_path / "dm" / "quota.json")}
        config = samples_config(tmp_path, endpoint=server.url, sources=[generic_source(orders)],
                                destination=destination, window={"safety_margin_minutes": 0})
        run = cli(*run_args(config, tmp_path / "out"), secret="")
        assert_no_traceback(run.stdout, run.stderr)
        assert run.code == 0, run.stderr[-2000:]
        stored = stored_events(server.data_dir)
        assert server.stats()["responses"] == {"400": 1, "200": 1}  # fast-fail, then the rest at once
    summary = run.summary(tmp_path / "out")
    assert (summary["sent"], summary["rejected_at_send"], summary["failed"]) == (4, 2, 0) and balanced(summary)
    assert stored == {("purchase", t): 1 for t, age in zip(tids, ages, strict=True) if age < 71}
    rejects = [orjson.loads(line) for line in (tmp_path / "out" / "rejects.ndjson").read_bytes().splitlines()]
    assert [(r["source"], r["row"], r["at"]) for r in rejects] == [("orders", 2, "send"), ("orders", 4, "send")]
    for r in rejects:
        (reason,) = r["reasons"]
        assert reason["validationCode"] == "EVENT_TIME_INVALID"
        assert reason["fieldPath"] == "events[0].timestamp_micros"
        assert reason["description"].startswith("column 'Closed At': Data Manager refused it (eventTimestamp")
    rows = ledger_rows(ledger_path(tmp_path))
    assert {t: rows[("purchase", t)]["status"] for t in tids} == {
        t: ("rejected" if age > 71 else "sent") for t, age in zip(tids, ages, strict=True)}
    sent_ids = {rows[("purchase", t)]["request_id"] for t, age in zip(tids, ages, strict=True) if age < 71}
    assert len(sent_ids) == 1 and None not in sent_ids  # Google's requestId, kept on each event


def test_the_daily_quota_leaves_the_rest_planned_and_the_summary_says_so(tmp_path):
    credentials = service_account(tmp_path / "dm" / "sa.json")
    orders = tmp_path / "orders.csv"
    tids = write_orders(orders, prefix="QUOTA", clients=20, per_client=1)
    quota = tmp_path / "dm" / "quota.json"
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret="unused-mp-secret",
                         now=NOW, dm_service_account=credentials, property_id=PROPERTY_ID) as server:
        point_at(credentials, server.url)

        def night(limit: int, out: str):
            config = config_for(tmp_path, [generic_source(orders)], **dm_destination(
                server.url, credentials, quota, max_events_per_request=5, daily_request_quota=limit))
            run = cli(*run_args(config, tmp_path / out), secret="")
            assert_no_traceback(run.stdout, run.stderr)
            return run, run.summary(tmp_path / out)

        run, summary = night(2, "out1")
        assert run.code == EXIT_STOPPED and summary["stopped"] == "daily_quota" and balanced(summary)
        assert summary["sent"] == 10 and summary["data_manager"]["left_planned"] == 10
        assert summary["data_manager"]["left_planned_reason"] == "daily_quota"
        assert ledger_counts(ledger_path(tmp_path)) == {"sent": 10, "planned": 10, "runs": 1}  # planned, not failed

        run, summary = night(2, "out2")  # the same quota day: nothing left to spend
        assert run.code == EXIT_STOPPED and summary["send"]["requests_sent"] == 0
        assert server.stats()["dm_requests"] == 2

        run, summary = night(10, "out3")  # a larger quota: the rest goes
        assert run.code == 0 and summary["sent"] == 10 and summary["duplicate"] == 10  # the planned rows, taken over
        assert orjson.loads(quota.read_bytes())["used"] == 4
        assert stored_events(server.data_dir) == {("purchase", t): 1 for t in tids}


def test_validate_asks_google_with_validate_only_and_stores_nothing(tmp_path):
    credentials = service_account(tmp_path / "dm" / "sa.json")
    orders = tmp_path / "orders.csv"
    write_orders(orders, prefix="VAL", clients=5, per_client=1)
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret="unused-mp-secret",
                         now=NOW, dm_service_account=credentials, property_id=PROPERTY_ID) as server:
        point_at(credentials, server.url)
        config = config_for(tmp_path, [generic_source(orders)], **dm_destination(server.url, credentials,
                                                                                  tmp_path / "dm" / "quota.json"))
        run = cli("validate", "--config", str(config), "--out", str(tmp_path / "val"),
                  "--now", NOW.isoformat().replace("+00:00", "Z"), "--debug-endpoint", secret="")
        assert run.code == 0, run.stderr[-2000:]
        stats = server.stats()
        assert stats["dm_validate_requests"] == 1 and stats["events_stored"] == 0
        assert orjson.loads((tmp_path / "val" / "summary.json").read_bytes())["data_manager"]["validate_only"] is True
    assert not ledger_counts(ledger_path(tmp_path)).get("sent")  # validate never changes the real ledger


def test_reconcile_reads_request_diagnostics_as_an_early_signal(tmp_path):
    credentials = service_account(tmp_path / "dm" / "sa.json")
    orders = tmp_path / "orders.csv"
    tids = write_orders(orders, prefix="DIAG", clients=40, per_client=1)
    with spawn_collector(tmp_path / "state" / "collector", measurement_id=MEASUREMENT_ID, api_secret="unused",
                         now=NOW, dm_service_account=credentials, property_id=PROPERTY_ID,
                         faults=FaultOptions(drop_rate=0.5, seed=7)) as server:
        point_at(credentials, server.url)
        config = config_for(tmp_path, [generic_source(orders)], **dm_destination(
            server.url, credentials, tmp_path / "dm" / "quota.json", max_events_per_request=5))
        run = cli(*run_args(config, tmp_path / "out"), secret="")
        assert run.code == 0, run.stderr[-2000:]  # every request was accepted ...
        lost = server.stats()["dropped"]["injected_drop"]
        assert 0 < lost < 40
        proof = cli(*reconcile_args(config, tmp_path / "reconcile"))
    status = orjson.loads((tmp_path / "reconcile" / "request_status.json").read_bytes())
    # ... and Google's diagnostics say which were lost in processing, before any export could.
    assert status["requests"] == 8 and status["checked"] == 8
    assert status["failed_records"] == lost and status["statuses"]["FAILED"] == lost // 5
    assert status["statuses"].get("SUCCESS", 0) == 8 - lost // 5
    assert f"{lost} records failed in processing" in proof.stdout
    assert proof.code == 3  # the export proves it: those events are missing

    # `mpetl resend` sends the missing ones again, through the same API, to an endpoint that keeps them.
    with spawn_collector(tmp_path / "state" / "collector", measurement_id=MEASUREMENT_ID, api_secret="unused",
                         now=NOW, dm_service_account=credentials, property_id=PROPERTY_ID) as server:
        point_at(credentials, server.url)
        config = config_for(tmp_path, [generic_source(orders)], **dm_destination(
            server.url, credentials, tmp_path / "dm" / "quota.json", max_events_per_request=5))
        run_id = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]
        resend = cli("resend", "--config", str(config), "--run-id", run_id, "--out", str(tmp_path / "resend"),
                     secret="")
        assert resend.code == 0, resend.stdout + resend.stderr
        assert server.stats()["dm_requests"] == -(-lost // 5)
    assert stored_events(tmp_path / "state" / "collector", "DIAG") == {("purchase", t): 1 for t in tids}
