"""The config model: every mistake the issue lists is a one-line ConfigError naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.config import GOOGLE_EU_ENDPOINT, load_config
from etl.errors import ConfigError
from tests.support import REPO, SAMPLES_CONFIG

BASE = """\
[property]
measurement_id = "G-ABC123"
timezone = "Europe/London"

[[sources]]
name = "crm"
path = "deals.csv"
"""


def write(tmp_path: Path, *extra: str, base: str = BASE) -> Path:
    path = tmp_path / "mpetl.toml"
    path.write_text(base + "\n".join(extra) + "\n")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(str(path))
    return text


def test_the_samples_config_loads_with_the_same_api():
    config = load_config(SAMPLES_CONFIG)
    assert config.property.measurement_id == "G-K7QW2ZP9LM"
    assert config.ledger_path == REPO / "state" / "ledger.sqlite"
    shopify = config.source("shopify")
    assert shopify.options.get("refunds") is True and shopify.options.get("won_stages", ["x"]) == ["x"]
    square = config.source("square")
    assert square.options["items_path"] == "square_item_details.csv"
    assert square.identity_map.path == REPO / "data/samples/pos/customer_identity_map.csv"
    assert config.source("generic_de").columns["client_id"] == "GA Client ID"


@pytest.mark.parametrize("extra,key,words", [
    (['timezon = "America/New_York"'], "sources.crm.timezon", "did you mean 'timezone'"),
    (["[sources.column]", 'client_id = "GA"'], "sources.crm.column", "did you mean 'columns'"),
    (["[destinaton]", "concurrency = 4"], "destinaton", "did you mean 'destination'"),
    (["[destination]", "concurrency = 5000"], "destination.concurrency", "256"),
    (["[destination]", "concurrency = 0"], "destination.concurrency", "1"),
    (["[destination]", 'concurrency = "8"'], "destination.concurrency", "integer"),
    (["[destination]", "timeout_s = 0"], "destination.timeout_s", "greater than 0"),
    (["[window]", "max_age_hours = -5"], "window.max_age_hours", "greater than 0"),
    (["[window]", "max_age_hours = 96"], "window.max_age_hours", "72"),
    (['event = "sign up!"'], "sources.crm.event", "letters, digits and underscores"),
    (['event = "session_start"'], "sources.crm.event", "reserved"),
    (['encoding = "utf-99"'], "sources.crm.encoding", "unknown encoding"),
    (["[window]", 'date_only_time = "25:00"'], "window.date_only_time", "HH:MM"),
    (["[destination]", 'api_secret_file = "."'], "destination.api_secret_file", "directory"),
    (["[destination]", 'endpoint = "http://127.0.0.1:99999"'], "destination.endpoint", "not a valid URL"),
    (["[destination]", 'endpoint = "http://[::1"'], "destination.endpoint", "not a valid URL"),
    (["[destination]", 'endpoint = "ftp://example.com"'], "destination.endpoint", "http(s)"),
    (["[destination]", 'api_secret = "s3cr3t-value"'], "destination.api_secret", "MP_API_SECRET"),
    (['kind = "csvv"'], "sources.crm.kind", "'csv'"),
    (["options = { refunds = true }"], "sources.crm.options.refunds", "shopify"),
    (['delimiter = ";;"'], "sources.crm.delimiter", "single character"),
    (['timezone = "Europe"'], "sources.crm.timezone", "IANA"),
    (["[reconcile]", 'backend = "bigquery"'], "reconcile.project", "project and dataset"),
    (["[[sources]]", 'name = "crm"', 'path = "other.csv"'], "sources", "names must be unique"),
    (["[sources.filter]", "Stage = []"], "sources.crm.filter", "every row would be rejected"),
    (["[sources.columns]", "client_id = 5"], "sources.crm.columns.client_id", "string"),
    (["send_user_id = \"yes\""], "sources.crm.send_user_id", "boolean"),
])
def test_each_mistake_is_one_line_naming_the_key(tmp_path, extra, key, words):
    text = error_of(write(tmp_path, *extra))
    assert f"[{key}]" in text
    assert words in text
    assert "s3cr3t-value" not in text


@pytest.mark.parametrize("mid", ["G-", "G-K7Q W2Z&api_secret=x", "UA-1234-1", "g-abc123"])
def test_measurement_ids_must_be_a_web_stream_id_and_are_not_echoed(tmp_path, mid):
    text = error_of(write(tmp_path, base=BASE.replace("G-ABC123", mid)))
    assert "[property.measurement_id]" in text and "G-K7QW2ZP9LM" in text
    assert "api_secret=x" not in text


def test_filter_values_and_region_are_typed(tmp_path):
    config = load_config(write(tmp_path, "[destination]", 'region = "eu"', "[sources.filter]", 'Stage = "Closed Won"',
                               'Pipeline = ["New Business", "Upsell"]'))
    assert config.destination.endpoint == GOOGLE_EU_ENDPOINT
    assert config.sources[0].filter == {"Stage": ("Closed Won",), "Pipeline": ("New Business", "Upsell")}


def test_relative_paths_resolve_against_base_dir(tmp_path):
    config = load_config(write(tmp_path, base='base_dir = "data"\n' + BASE))
    assert config.sources[0].path == tmp_path / "data" / "deals.csv"


def test_a_config_error_from_the_cli_is_one_line_exit_2(run_mpetl, tmp_path):
    path = write(tmp_path, 'timezon = "America/New_York"')
    result = run_mpetl("validate", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "did you mean 'timezone'" in result.stderr


def test_schema_prints_the_json_schema(run_mpetl):
    result = run_mpetl("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    props = schema["properties"]
    assert {"property", "destination", "ledger", "window", "sources", "reconcile", "privacy"} <= set(props)
    source = schema["$defs"]["SourceConfig"]
    assert source["additionalProperties"] is False
    assert "filter" in source["properties"]
    dest = schema["$defs"]["DestinationConfig"]["properties"]["concurrency"]
    assert dest["maximum"] == 256 and dest["minimum"] == 1


def test_the_schema_accepts_the_samples_and_refuses_what_the_loader_refuses(run_mpetl):
    import tomllib

    import jsonschema

    schema = json.loads(run_mpetl("schema").stdout)
    samples = tomllib.loads(SAMPLES_CONFIG.read_text())
    jsonschema.validate(samples, schema)  # an editor would show no error on the shipped example
    for broken in ({**samples, "destinaton": {}}, {**samples, "sources": [{**samples["sources"][0], "timezon": "UTC"}]},
                   {**samples, "destination": {"concurrency": 5000}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
