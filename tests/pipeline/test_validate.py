"""`mpetl validate`: everything but sending, with a table of reasons; optionally the debug endpoint too."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import orjson
import pytest

from etl.collector import read_store, spawn_collector
from tests.support import SAMPLES_NOW, cli_errors, samples_config

SECRET = "secret-validate-91"


@pytest.fixture
def run_mpetl(run_mpetl):
    """This module's secret, on the samples' night."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)


def test_validate_counts_reasons_and_sends_nothing(run_mpetl, tmp_path):
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=tmp_path / "store")
        result = run_mpetl("validate", "--config", str(config), "--now", SAMPLES_NOW)
        requests = server.stats()["requests"]
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(x) for x in result.stdout.splitlines()]
    *reasons, totals = lines
    filtered = [r for r in reasons if r.get("filtered")]
    rejected = [r for r in reasons if not r.get("filtered")]
    assert requests == 0
    assert sum(r["rows"] for r in rejected) >= totals["rejected"] > 0
    assert {"VALUE_INVALID", "VALUE_REQUIRED"} <= {r["validationCode"] for r in rejected}
    # Not conversions and denied consent are listed apart, their rows adding up to the filtered bucket.
    assert {"NOT_A_CONVERSION", "CONSENT_DENIED", "NO_CONSENT"} == {r["validationCode"] for r in filtered}
    assert sum(r["rows"] for r in filtered) == totals["filtered"] > 0
    assert totals["rows_in"] == (totals["would_send"] + totals["filtered"] + totals["rejected"] + totals["duplicate"]
                                 + totals["deferred"] + totals["outside_window"])
    # Validation works on a scratch copy: the real ledger is never created or touched.
    assert not (tmp_path / "state" / "ledger.sqlite").exists()


def test_validate_against_the_debug_endpoint_records_nothing(run_mpetl, tmp_path):
    pinned = datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00"))
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET,
                         timezone="Europe/London", now=pinned) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=tmp_path / "store")
        result = run_mpetl("validate", "--config", str(config), "--now", SAMPLES_NOW, "--debug-endpoint")
        stats = server.stats()
    assert result.returncode == 0, result.stderr
    totals = orjson.loads(result.stdout.splitlines()[-1])
    assert stats["debug_requests"] > 0 and stats["requests"] == 0 and stats["events_stored"] == 0
    assert read_store(tmp_path / "store").empty
    # Everything the local validation let through, the debug endpoint accepts too.
    assert totals["would_send"] > 100 and totals["debug_messages"] == {}


def test_mpetl_collector_serves_and_stores(run_mpetl, tmp_path):
    import httpx

    proc = run_mpetl.popen("collector", "--port", "0", "--data", str(tmp_path / "s"), "--measurement-id", "G-CLI12345",
                           text=True)
    try:
        started = orjson.loads(proc.stdout.readline())
        assert started["event"] == "collector_started"
        body = {"client_id": "1.2", "events": [{"name": "purchase", "params": {"transaction_id": "C-1", "value": 1.5,
                                                                               "currency": "EUR"}}]}
        answer = httpx.post(started["url"] + "/mp/collect", params={"measurement_id": "G-CLI12345", "api_secret": SECRET},
                            json=body)
        assert answer.status_code == 204
        assert len(read_store(tmp_path / "s")) == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert SECRET not in err


def test_validate_can_sample_the_debug_endpoint(run_mpetl, tmp_path):
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=tmp_path / "store")
        result = run_mpetl("validate", "--config", str(config), "--now", SAMPLES_NOW, "--debug-endpoint", "--sample", "3",
                           "--out", str(tmp_path / "v"))
        stats = server.stats()
    assert result.returncode == 0, result.stderr
    assert stats["debug_requests"] == 3 and stats["requests"] == 0
    totals = orjson.loads(result.stdout.splitlines()[-1])
    assert totals["debug_requests"] == 3
    # What the sample did not reach passed every local check: it would be sent, it did not fail.
    assert totals["failed"] == 0 and totals["would_send"] > 100 and totals["exit_code"] == 0
    summary = orjson.loads((tmp_path / "v" / "summary.json").read_bytes())
    assert summary["failed"] == 0 and summary["exit_code"] == 0 and summary["not_sampled"] > 0
    # Read as a whole, the summary says what was checked and what was not: nothing was sent.
    assert "sent" not in summary and summary["send"]["requests_validated"] == 3
    assert summary["not_sampled"] + summary["send"]["events_validated"] == summary["would_send"]
    assert summary["send"]["debug_http_statuses"] == {"200": 3} and "http_statuses" not in summary["send"]
    assert totals["not_sampled"] == summary["not_sampled"]


def test_validate_against_a_debug_endpoint_that_is_down_exits_4_like_its_summary(run_mpetl, tmp_path, closed_port):
    config = samples_config(tmp_path, endpoint=f"http://127.0.0.1:{closed_port}",
                            destination={"max_attempts": 1})
    result = run_mpetl("validate", "--config", str(config), "--now", SAMPLES_NOW, "--debug-endpoint",
                       "--out", str(tmp_path / "v"))
    totals = orjson.loads(result.stdout.splitlines()[-1])
    summary = orjson.loads((tmp_path / "v" / "summary.json").read_bytes())
    assert result.returncode == 4 == totals["exit_code"] == summary["exit_code"]
    assert totals["failed"] == summary["failed"] > 100 and totals["would_send"] == 0
    # The cause, by class and count, on stderr as a JSON error line (not a terminal), and in summary.json.
    assert cli_errors(result.stderr)[-1].startswith("debug endpoint: ConnectError × ")
    assert summary["send"]["last_error"]["error"] == "ConnectError" and summary["send"]["last_error"]["count"] > 0


def test_validate_asks_the_debug_endpoint_to_enforce_recommendations(run_mpetl, tmp_path):
    """Google recommends ENFORCE_RECOMMENDATIONS while developing: under it, an event older than 72 h by
    Google's clock is reported; under the default RELAXED it would be silently re-dated. The endpoint's
    clock runs two days ahead of ours, so events that are fresh for us are too old for it."""
    ahead = datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00")) + timedelta(days=2)
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET,
                         timezone="Europe/London", now=ahead) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=tmp_path / "store")
        result = run_mpetl("validate", "--config", str(config), "--now", SAMPLES_NOW, "--debug-endpoint")
        stats = server.stats()
    totals = orjson.loads(result.stdout.splitlines()[-1])
    assert stats["debug_requests"] > 0 and stats["events_stored"] == 0
    messages = totals["debug_messages"]
    assert messages and sum(messages.values()) > 0, "RELAXED would have accepted the old events without a word"
    # Reported, scrubbed: no transaction id or secret from the bodies is echoed back.
    assert SECRET not in result.stdout + result.stderr
    assert not any(re.search(r"\d{6,}", key) for key in messages), messages  # no ids, timestamps or cookies
