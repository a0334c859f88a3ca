"""The config model: every mistake the issue lists is a one-line ConfigError naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.config import (
    GOOGLE_EU_ENDPOINT,
    DestinationConfig,
    DeviceConfig,
    HistoricalConfig,
    IdentityMapConfig,
    LedgerConfig,
    PlaceConfig,
    PrivacyConfig,
    PropertyConfig,
    ReconcileConfig,
    SourceConfig,
    SourceLocation,
    SourceOptions,
    WindowConfig,
    load_config,
)
from etl.errors import ConfigError
from tests.support import REPO, SAMPLES_CONFIG, cli_errors, files_containing

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


def test_every_problem_is_its_own_line_with_did_you_mean_in_every_table(run_mpetl, tmp_path):
    """Typos in four tables at once: all of them are shown (no "(and 2 more problems)"), each line names the
    file and the key and says which key was meant; the required key a typo left out is not repeated."""
    path = tmp_path / "mpetl.toml"
    path.write_text('[property]\nmeasurment_id = "G-ABC123"\ntimezone = "UTC"\n'
                    '[destination]\nconcurency = 4\n[reconcile]\nbakend = "duckdb"\n'
                    '[[sources]]\nname = "crm"\npath = "deals.csv"\nevnt = "purchase"\n')
    result = run_mpetl("validate", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = cli_errors(result.stderr)
    assert result.stderr.strip().count("\n") == len(lines) - 1  # nothing but the problems
    meant = {"property.measurment_id": "measurement_id", "destination.concurency": "concurrency",
             "reconcile.bakend": "backend", "sources.crm.evnt": "event"}
    assert sorted(line.split(" unknown key")[0] for line in lines) == sorted(f"{path}: [{k}]" for k in meant)
    for key, right in meant.items():
        (line,) = [x for x in lines if f"[{key}]" in x]
        assert f"did you mean {right!r}?" in line
    assert not any("more problem" in x or "is required" in x for x in lines)


def test_a_misspelt_column_field_says_which_field_was_meant(run_mpetl, tmp_path):
    path = write(tmp_path, "[sources.columns]", 'clientid = "GA"')
    result = run_mpetl("validate", "--config", str(path))
    assert result.returncode == 2
    assert any("columns.clientid is not a known field; did you mean 'client_id'?" in x for x in cli_errors(result.stderr))


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


# --- issue 23: credentials in URLs, codecs that are not text, non-finite numbers, and a fuzz of every field -----

PW = "Pw0rd-Zq7x"
CREDENTIALS = [
    (["[destination]", f'endpoint = "http://user:{PW}@127.0.0.1:8080"'], "destination.endpoint"),
    (["[destination]", f'endpoint = "https://{PW}@www.google-analytics.com"'], "destination.endpoint"),
    (["[ledger]", f'url = "postgresql://mpetl:{PW}@db.internal:5432/mpetl"'], "ledger.url"),
    (["[ledger]", f'url = "postgresql://mpetl@db.internal/mpetl?sslmode=require&password={PW}"'], "ledger.url"),
    (["[reconcile]", f'api_endpoint = "http://u:{PW}@127.0.0.1:9050"'], "reconcile.api_endpoint"),
    (["[historical]", 'table = "historical"', f'api_endpoint = "http://u:{PW}@127.0.0.1:9050"'], "historical.api_endpoint"),
]
SOURCE_CREDENTIALS = [
    (f"s3://AKIAEXAMPLE:{PW}@bucket/deals.csv", "sources.crm.path"),
    (f"https://user:{PW}@files.example.com/deals.csv", "sources.crm.path"),
    (f"https://files.example.com/deals.csv?token={PW}", "sources.crm.path"),
    (f"gs://bucket/deals.csv?X-Goog-Signature={PW}", "sources.crm.path"),
]


def _with_source_path(path: str) -> str:
    return BASE.replace('path = "deals.csv"', f'path = "{path}"')


@pytest.mark.parametrize(("extra", "key"), CREDENTIALS, ids=[k for _, k in CREDENTIALS])
def test_a_credential_in_a_url_is_a_config_error_that_never_shows_it(tmp_path, extra, key):
    text = error_of(write(tmp_path, *extra))
    assert f"[{key}]" in text and PW not in text
    assert any(hint in text for hint in ("MP_API_SECRET", "PGPASSWORD", "credentials"))


@pytest.mark.parametrize(("path", "key"), SOURCE_CREDENTIALS, ids=[p.split(":")[0] + str(i) for i, (p, _) in enumerate(SOURCE_CREDENTIALS)])
def test_a_credential_in_a_source_url_is_a_config_error(tmp_path, path, key):
    text = error_of(write(tmp_path, base=_with_source_path(path)))
    assert f"[{key}]" in text and PW not in text and "credentials" in text


def test_a_password_less_ledger_url_is_accepted(tmp_path):
    config = load_config(write(tmp_path, "[ledger]", 'url = "postgresql://mpetl@db.internal:5432/mpetl?sslmode=require"'))
    assert config.ledger_url == "postgresql://mpetl@db.internal:5432/mpetl?sslmode=require"


@pytest.mark.parametrize(("extra", "key"), CREDENTIALS[:3], ids=[k for _, k in CREDENTIALS[:3]])
def test_a_run_with_a_credential_in_a_url_stores_it_nowhere(run_mpetl, tmp_path, extra, key):
    """Through the CLI: exit 2, one line naming the key; the password is in no file but the config itself
    (the ledger that used to store the endpoint is never opened)."""
    (tmp_path / "deals.csv").write_text("Order,Amount\nA1,1\n")
    config = write(tmp_path, *extra)
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"[{key}]" in result.stderr and PW not in result.stderr + result.stdout
    assert files_containing(tmp_path, PW) == [config]


@pytest.mark.parametrize("codec", ["base64", "hex", "rot13", "zlib", "uu", "bz2"])
def test_an_encoding_that_is_not_a_text_codec_is_a_config_error(tmp_path, codec):
    text = error_of(write(tmp_path, f'encoding = "{codec}"'))
    assert "[sources.crm.encoding]" in text and "not a text encoding" in text


def _float_fields() -> list[tuple[str, str]]:
    """(table, key) of every float field of the config model."""
    found = []
    for table, cls in _TABLES.items():
        for name, info in cls.__pydantic_fields__.items():
            if "float" in str(info.annotation):
                found.append((table, name))
    return found


@pytest.mark.parametrize("number", ["inf", "-inf", "nan", "+inf"])
def test_non_finite_numbers_are_config_errors_in_every_float_field(tmp_path, number):
    fields = _float_fields()
    assert ("window", "safety_margin_minutes") in fields and len(fields) >= 12
    for table, key in fields:
        path = write(tmp_path, *_table_lines(table, f"{key} = {number}"))
        text = error_of(path)
        assert f"[{_key_path(table, key)}]" in text and "finite" in text, (table, key, text)


# The fuzz: every field of every table, each hostile value, through `mpetl validate --config`. A value is
# either refused as a one-line exit-2 error naming the key, or (where it is a legitimate value) validated
# like any other config; never a traceback.
_TABLES = {
    "property": PropertyConfig, "destination": DestinationConfig, "ledger": LedgerConfig, "window": WindowConfig,
    "reconcile": ReconcileConfig, "historical": HistoricalConfig, "privacy": PrivacyConfig, "sources": SourceConfig,
    "sources.options": SourceOptions, "sources.identity_map": IdentityMapConfig,
    # issue 26: store locations, the device, app streams
    "sources.location": SourceLocation, "sources.device": DeviceConfig, "locations.shop": PlaceConfig,
}
HOSTILE = {
    "string": '"x"', "empty string": '""', "huge int": "100000000000000000000000", "huge float": "1e300",
    "nan": "nan", "inf": "inf", "negative": "-1", "zero": "0", "bool": "true", "table": "{ a = 1 }",
    "list": "[1, 2]",
}
# Values a field may legitimately take (the fuzz then expects a normal validation, not an error).
LEGITIMATE = {
    ("historical", "table"): {"empty string"},  # "" switches the table off, as leaving it out does
    ("sources", "send_user_id"): {"bool"}, ("sources", "engagement_time"): {"bool"},
    ("sources.options", "refunds"): {"bool"}, ("sources.options", "storage_api"): {"bool"},
    ("sources.options", "won_stages"): {"string", "empty string"},
    ("sources.options", "purchase_statuses"): {"string", "empty string"},
    ("property", "property_id"): {"zero", "huge int"},  # an integer id is the same id
    ("property", "stream_id"): {"zero", "huge int"},
    ("reconcile", "tolerance"): {"zero"}, ("reconcile", "tolerance_value"): {"zero"}, ("reconcile", "daily_export_cap"): {"zero"},
    ("window", "safety_margin_minutes"): {"zero"}, ("window", "future_tolerance_minutes"): {"zero"},
    ("reconcile", "provisional_hours"): {"zero"}, ("reconcile", "arrival_grace_minutes"): {"zero"},
    ("sources", "params"): set(), ("sources", "columns"): set(), ("sources", "filter"): set(),
}
SKIPPED = {("sources", "name"), ("sources", "kind"), ("sources", "path")}  # the fuzzed source must stay a csv file
# Relative paths and names: "x" is a legitimate value of these.
for _field in [("destination", "api_secret_file"), ("ledger", "path"), ("reconcile", "store"), ("reconcile", "project"),
               ("reconcile", "dataset"), ("reconcile", "location"), ("historical", "table"), ("historical", "project"),
               ("historical", "location"), ("historical", "path"), ("sources", "project"), ("sources", "location"),
               ("sources.options", "items_path"), ("sources.options", "read_api_endpoint"), ("sources", "table"),
               ("sources", "query"), ("sources", "event"), ("sources.identity_map", "path"), ("sources.identity_map", "key"), ("sources.identity_map", "client_id"),
               ("sources.identity_map", "source_key"),
               # column names (a missing column is the extract's one-line error) and a city's name
               *(("sources.location", k) for k in ("store", "fixed_store", *SourceLocation.COLUMNS)),
               ("locations.shop", "city"),
               *(("sources.device", k) for k in ("operating_system", "operating_system_version", "model", "brand",
                                                 "browser", "browser_version"))]:
    LEGITIMATE.setdefault(_field, set()).add("string")
CASES = [(table, key, kind) for table, cls in _TABLES.items() for key in cls.__pydantic_fields__
         if (table, key) not in SKIPPED and key != "KINDS" for kind in HOSTILE]
FUZZ_TABLES = {
    "property": {"measurement_id": '"G-ABC123"', "timezone": '"Europe/London"'},
    "ledger": {"path": '"state/ledger.sqlite"'},
    "sources": {"name": '"crm"', "path": '"deals.csv"', "consent_default": '"grant"',
                "columns": '{ client_id = "Cookie", timestamp = "At", transaction_id = "Order", value = "Amount", currency = "Cur" }'},
}
def _key_path(table: str, key: str) -> str:
    if table == "sources":
        return f"sources.crm.{key}"
    if table.startswith("sources."):
        return f"sources.crm.{table.removeprefix('sources.')}.{key}"
    return f"{table}.{key}"


def _table_lines(table: str, line: str) -> list[str]:
    if table == "sources":
        return [line]  # BASE ends inside the [[sources]] entry
    if table.startswith("sources."):
        return [f"[sources.{table.removeprefix('sources.')}]", line]
    return [f"[{table}]", line]


def _fuzz_config(tmp_path: Path, table: str, key: str, value: str) -> Path:
    (tmp_path / "deals.csv").write_text("Cookie,At,Order,Amount,Cur\nGA1.1.1.1749482504,2026-11-20 10:00:00,A1,1.00,EUR\n")
    tables = {name: dict(keys) for name, keys in FUZZ_TABLES.items()}
    if table == "sources.identity_map":
        tables[table] = {"path": '"ids.csv"', "key": '"k"', "client_id": '"c"'}
        (tmp_path / "ids.csv").write_text("k,c\n1,2\n")
    if table == "historical" and key != "table":
        tables[table] = {"table": '"hist"'}
    if table.startswith("locations") or table == "sources.location":
        tables["locations.shop"] = {"country_id": '"GB"'} if key != "country_id" or table != "locations.shop" else {}
    tables.setdefault(table, {})[key] = value
    lines = []
    for name, keys in tables.items():
        if not name.startswith("sources"):
            lines += [f"[{name}]", *(f"{k} = {v}" for k, v in keys.items())]
    lines += ["[[sources]]", *(f"{k} = {v}" for k, v in tables["sources"].items())]
    for name in ("sources.options", "sources.identity_map", "sources.location", "sources.device"):
        if name in tables:
            lines += [f"[{name}]", *(f"{k} = {v}" for k, v in tables[name].items())]
    path = tmp_path / "mpetl.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_fuzz_covers_every_field_of_the_model():
    keys = {(t, k) for t, k, _ in CASES}
    assert ("destination", "deadline_s") in keys and ("sources", "max_field_bytes") in keys
    assert {("property", "firebase_app_id"), ("sources", "device"), ("sources.location", "unknown_store"),
            ("sources.device", "category"), ("locations.shop", "region_id")} <= keys
    assert len(keys) >= 90 and len(CASES) == len(keys) * len(HOSTILE)


@pytest.mark.parametrize(("table", "key", "kind"), CASES, ids=[f"{t}.{k}={v}" for t, k, v in CASES])
def test_every_hostile_value_of_every_field_is_a_one_line_error_or_validates(tmp_path, table, key, kind):
    from click.testing import CliRunner

    from etl.cli import main

    config = _fuzz_config(tmp_path, table, key, HOSTILE[kind])
    result = CliRunner().invoke(main, ["validate", "--config", str(config)], env={"MP_API_SECRET": "x"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if kind in LEGITIMATE.get((table, key), set()):
        assert result.exit_code in (0, 2, 3), result.stderr
        return
    assert result.exit_code == 2, f"{table}.{key} = {HOSTILE[kind]} was accepted: {result.stdout[-300:]}"
    # One line per problem (a hostile list can hold several), each an error line naming the key.
    lines = result.stderr.strip().splitlines()
    assert len(cli_errors(result.stderr)) == len(lines) and "Traceback" not in result.stderr
    for line in cli_errors(result.stderr):
        named = line.split("[", 1)[1].split("]", 1)[0] if "[" in line else ""
        assert named.startswith(_key_path(table, key).rsplit(".", 1)[0]), (line, table, key)


# --- issue 26: store locations, the device, app streams -------------------------------------------------------

@pytest.mark.parametrize(("extra", "key", "words"), [
    (['location = "EU"'], "sources.crm.location", "[sources.location] table"),
    (["[sources.location]", 'fixed_store = "Leeds"'], "sources.crm.location.fixed_store", "is not a store of [locations]"),
    (["[sources.location]", 'store = "Shop"'], "sources.crm.location", "no [locations] table"),
    (["[sources.location]", 'store = "Shop"', 'city = "City"'], "sources.crm.location.city", "not both"),
    (["[sources.device]", 'category = "kiosk"'], "sources.crm.device.category", "smart TV"),
    (["[sources.device]", 'language = "english"'], "sources.crm.device.language", "ISO 639-1"),
    (["[locations.soho]", 'city = "London"', 'region_id = "GB-MAN"', 'country_id = "FR"'],
     "locations.soho.region_id", "is a region of GB, not of country_id FR"),
    (["[locations.soho]", 'city = "12 Baker Street"', 'country_id = "GB"'], "locations.soho.city", "no digits"),
    (["[locations.soho]", 'country_id = "UK"'], "locations.soho.country_id", "ISO 3166-1 alpha-2"),
    (["[locations.soho]", 'country_id = "GB"', 'continent_id = "154"'], "locations.soho.continent_id", "UN M49"),
    (["[locations.soho]", 'city = "London"'], "locations.soho.country_id", "is required"),
])
def test_place_mistakes_are_one_line_naming_the_key(tmp_path, extra, key, words):
    text = error_of(write(tmp_path, *extra))
    assert f"[{key}]" in text and words in text, text


def test_a_config_holds_a_web_or_an_app_stream_and_says_so_when_both_are_asked(tmp_path):
    both = BASE.replace('timezone = "Europe/London"', 'timezone = "Europe/London"\nfirebase_app_id = "1:1234567890:android:321abc456def7890"')
    text = error_of(write(tmp_path, base=both))
    assert "[property.firebase_app_id]" in text and "web stream (measurement_id) or an app stream (firebase_app_id), not both" in text
    app = load_config(write(tmp_path, base=both.replace('measurement_id = "G-ABC123"\n', "")))
    assert (app.property.mp_stream_id, app.property.stream_param, app.property.identity_field) == (
        "1:1234567890:android:321abc456def7890", "firebase_app_id", "app_instance_id")
    text = error_of(write(tmp_path, base=BASE.replace('measurement_id = "G-ABC123"\n', "")))
    assert "[property.measurement_id]" in text and "firebase_app_id" in text


def test_the_shipped_store_and_app_configs_load(tmp_path):
    stores = load_config(REPO / "jobs/configs/stores.toml")
    assert stores.locations["Soho"].user_location() == {"city": "London", "region_id": "GB-WSM", "country_id": "GB",
                                                        "subcontinent_id": "154", "continent_id": "150"}
    assert stores.source("shops").place is not None and stores.source("shops").job_location is None
    assert load_config(REPO / "jobs/configs/app.toml").property.is_app
