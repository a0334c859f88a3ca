"""A first-time user: raw CRM export → validated dry run, with only `mpetl init` and the error messages."""

from __future__ import annotations

import orjson

from tests.cli.common import NOW

EXPORT = ("Deal Id;Closed On;Amount (EUR);GA client id;Stage\n"
          "D-1;20.11.2026 10:15;1.234,50;GA1.1.1234567.1700000000;Closed Won\n"
          "D-2;20.11.2026 11:00;99,00;GA1.1.7654321.1700000001;Closed Lost\n")


def test_from_a_raw_crm_export_to_a_validated_dry_run(run_mpetl, tmp_path):
    assert run_mpetl("init", str(tmp_path), "--timezone", "Europe/Berlin").returncode == 0
    config = tmp_path / "mpetl.toml"
    (tmp_path / "data" / "closed_deals.csv").write_text(EXPORT, encoding="utf-8")

    # 1. The template's mapping does not fit: one line names every missing field, a guess, and the headers;
    #    consent is among them (the template maps it: under "deny" a source without it rejects every row).
    first = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert first.returncode == 2
    error = first.stderr.strip()
    assert len(error.splitlines()) == 1
    assert "timestamp (expected 'Close Date', did you mean 'Closed On'?)" in error
    assert "value (expected 'Amount', did you mean 'Amount (EUR)'?)" in error
    assert "currency (expected 'Currency')" in error and "'GA client id'" in error and "delimiter ';'" in error
    assert "consent_analytics (expected 'Analytics Consent')" in error
    text = config.read_text()
    assert 'consent_default = "deny" REJECTS EVERY ROW of a source that maps no consent' in text

    # 2. Mapped as the message says; this export records no consent, so, as the template's comment says, the
    #    consent line goes and the policy is decided: a clean validation, and the dry run's exact body.
    text = (text.replace('timestamp = "Close Date"', 'timestamp = "Closed On"')
                .replace('value = "Amount"', 'value = "Amount (EUR)"').replace('currency = "Currency"\n', "")
                .replace('# decimal = ","', 'decimal = ","\nthousands = "."\noptions = { currency = "EUR" }')
                .replace("# [sources.filter]", "[sources.filter]").replace('# Stage = ["Closed Won"]', 'Stage = ["Closed Won"]'))
    undecided = text.replace('consent_analytics = "Analytics Consent"\n', "")
    config.write_text(undecided)
    second = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert second.returncode == 2  # consent unmapped under "deny": nothing usable, and it says why
    assert "nothing usable" in second.stderr and "maps no analytics consent column" in second.stderr
    steps = " ".join(orjson.loads(second.stdout.splitlines()[-1])["next_steps"])
    assert "Source csv sent nothing for lack of consent" in steps
    config.write_text(undecided.replace('consent_default = "deny" ', 'consent_default = "grant"'))
    third = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert third.returncode == 0, third.stderr
    assert orjson.loads(third.stdout.splitlines()[-1])["would_send"] == 1
    dry = run_mpetl("-q", "run", "--dry-run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", NOW)
    assert dry.returncode == 0, dry.stderr
    body = orjson.loads((tmp_path / "out" / "requests.ndjson").read_bytes().splitlines()[0])
    assert body["events"][0]["params"]["value"] == 1234.5 and body["events"][0]["params"]["currency"] == "EUR"
