"""`kind = "bigquery"` with the real google-cloud-bigquery client against a local BigQuery API (bqemulator).

What a user would notice: a table and a query produce the same events as the same rows in a CSV;
`--since/--until` is a WHERE in the SQL BigQuery runs, so rows outside the window are never read (the
summary's `rows_in` counts only the rows in it, and still balances); a missing table or column is one
line naming it, exit 2, and the other sources go on.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pandas as pd
import pytest

from etl.accounting import Buckets
from etl.config import SourceConfig
from etl.errors import SourceError
from etl.extract import iter_source_chunks
from tests.reconcile.conftest import EMULATOR_PROJECT, bigquery_emulator  # noqa: F401  (the session fixture)
from tests.support import dump_toml

NOW = "2026-11-21T06:00:00Z"
BASE = dt.datetime(2026, 11, 18, 8, 0, tzinfo=dt.UTC)
N_ROWS = 24
NULL_TS_ROW = 10  # a row with no time: read whatever the window, rejected by the transform
COLUMNS = {"transaction_id": "order_id", "timestamp": "ts", "value": "amount", "client_id": "client",
           "currency": "currency", "consent_analytics": "consent", "items": "items"}


def _client(endpoint: str):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=EMULATOR_PROJECT, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def _rows() -> list[dict]:
    """Valid rows, rows without a client id (rejected), one without a time, consent granted and refused."""
    rows = []
    for i in range(N_ROWS):
        ts = BASE + dt.timedelta(hours=3 * i)
        rows.append({
            "order_id": f"BQ-{i:03d}",
            "ts": None if i == NULL_TS_ROW else ts.isoformat().replace("+00:00", "Z"),
            "amount": f"{19 + i}.{i % 10}5",
            "client": None if i % 5 == 4 else f"{1000 + i}.{1700000000 + i}",
            "currency": "EUR",
            "consent": i % 6 != 5,
            "items": [{"item_id": f"SKU-{i}", "price": f"{9 + i}.5", "quantity": 1 + i % 3}] if i % 2 else [],
        })
    return rows


def _csv(rows: list[dict]) -> str:
    """The same rows as a vendor would export them to CSV."""
    lines = ["order_id,ts,amount,client,currency,consent,items"]
    for r in rows:
        items = orjson.dumps([{**it, "price": float(it["price"])} for it in r["items"]]).decode()
        items = '"' + items.replace('"', '""') + '"'
        lines.append(",".join([r["order_id"], r["ts"] or "", r["amount"], r["client"] or "", r["currency"],
                               "true" if r["consent"] else "false", items]))
    return "\n".join(lines) + "\n"


@pytest.fixture
def warehouse(bigquery_emulator, tmp_path):  # noqa: F811
    """A dataset with table `orders` holding _rows(), and the same rows as orders.csv."""
    from google.cloud import bigquery

    client = _client(bigquery_emulator)
    dataset = f"shop_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    schema = [
        bigquery.SchemaField("order_id", "STRING"),
        bigquery.SchemaField("ts", "TIMESTAMP"),
        bigquery.SchemaField("amount", "NUMERIC"),
        bigquery.SchemaField("client", "STRING"),
        bigquery.SchemaField("currency", "STRING"),
        bigquery.SchemaField("consent", "BOOL"),
        bigquery.SchemaField("items", "RECORD", mode="REPEATED", fields=[
            bigquery.SchemaField("item_id", "STRING"),
            bigquery.SchemaField("price", "NUMERIC"),
            bigquery.SchemaField("quantity", "INT64"),
        ]),
    ]
    table = f"{EMULATOR_PROJECT}.{dataset}.orders"
    client.create_table(bigquery.Table(table, schema=schema))
    rows = _rows()
    assert client.insert_rows_json(table, rows) == []
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text(_csv(rows))
    return {"endpoint": bigquery_emulator, "dataset": dataset, "table": table, "csv": csv_path, "client": client}


def _config(tmp_path: Path, sources: list[dict]) -> Path:
    data = {
        "base_dir": str(tmp_path),
        "property": {"measurement_id": "G-TEST123", "timezone": "Europe/London"},
        "destination": {"endpoint": "local"},
        "ledger": {"path": str(tmp_path / "state" / "ledger.sqlite")},
        "sources": [{"event": "purchase", "timezone": "UTC", "consent_default": "deny", "columns": COLUMNS, **s}
                    for s in sources],
    }
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(data))
    return path


def _sources(w: dict) -> list[dict]:
    bq = {"kind": "bigquery", "project": EMULATOR_PROJECT, "api_endpoint": w["endpoint"]}
    return [
        {"name": "csv", "kind": "csv", "path": str(w["csv"])},
        {"name": "bq_table", **bq, "table": w["table"]},
        {"name": "bq_query", **bq,
         "query": f"SELECT * FROM `{w['table']}` WHERE order_id LIKE 'BQ-%' ORDER BY order_id;"},
    ]


def _run(run_mpetl, config: Path, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    # The night of NOW, simulated by the wall clock (an event's age is the wall clock's, never --now).
    result = run_mpetl("run", "--config", str(config), "--out", str(out), "--dry-run", "--now", NOW, *args,
                       env={"MP_API_SECRET": None}, clock=NOW)
    summary = orjson.loads((out / "summary.json").read_bytes()) if (out / "summary.json").exists() else {}
    return result, summary


def _events(out: Path) -> Counter:
    """Every event in the dry-run bodies with its request identity; the run marker differs run to run."""
    events: Counter = Counter()
    for line in (out / "requests.ndjson").read_bytes().splitlines():
        request = orjson.loads(line)
        for event in request["events"]:
            params = {k: v for k, v in event["params"].items() if k != "mpetl_run"}
            events[orjson.dumps({**event, "params": params, "client_id": request["client_id"],
                                 "consent": request.get("consent")}, option=orjson.OPT_SORT_KEYS)] += 1
    return events


def _balanced(s: dict) -> bool:
    return Buckets.from_summary(s, where="summary.json").balanced()


def test_table_and_query_produce_the_same_events_as_the_csv(run_mpetl, tmp_path, warehouse):
    config = _config(tmp_path, _sources(warehouse))
    results = {}
    for name in ("csv", "bq_table", "bq_query"):
        result, summary = _run(run_mpetl, config, tmp_path / name, "--source", name)
        assert result.returncode == 0, result.stderr
        assert _balanced(summary)
        results[name] = (summary["sources"][name], _events(tmp_path / name))
    csv_tally, csv_events = results["csv"]
    assert csv_tally["rows_in"] == N_ROWS and csv_tally["rejected"] > 0 and sum(csv_events.values()) > 10
    for name in ("bq_table", "bq_query"):
        tally, events = results[name]
        assert events == csv_events, name
        assert {k: tally[k] for k in ("rows_in", "rejected", "deferred", "reject_codes")} == \
               {k: csv_tally[k] for k in ("rows_in", "rejected", "deferred", "reject_codes")}, name


def test_since_until_is_a_where_in_the_sql_and_rows_outside_are_not_read(run_mpetl, tmp_path, warehouse):
    since, until = "2026-11-19T00:00:00Z", "2026-11-20T12:00:00Z"
    config = _config(tmp_path, _sources(warehouse))
    csv_run, csv_summary = _run(run_mpetl, config, tmp_path / "csv", "--source", "csv", "--since", since, "--until", until)
    bq_run, bq_summary = _run(run_mpetl, config, tmp_path / "bq", "--source", "bq_table", "--since", since, "--until", until)
    assert csv_run.returncode == bq_run.returncode == 0, bq_run.stderr
    low, high = dt.datetime(2026, 11, 19, tzinfo=dt.UTC), dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
    inside = [i for i in range(N_ROWS) if i != NULL_TS_ROW and low <= BASE + dt.timedelta(hours=3 * i) < high]
    assert 0 < len(inside) < N_ROWS - 1
    bq, csv = bq_summary["sources"]["bq_table"], csv_summary["sources"]["csv"]
    # The file is read whole and the transform leaves out what is outside (counted: outside_window);
    # BigQuery never returns it. Both take the rows in the window (+ the row without a time, rejected).
    assert csv["lines_read"] == csv["rows_in"] == N_ROWS and csv["outside_window"] == N_ROWS - 1 - len(inside)
    assert bq["lines_read"] == bq["rows_in"] == len(inside) + 1 and bq["outside_window"] == 0
    assert bq["rows_in"] == csv["rows_in"] - csv["outside_window"] == len(inside) + 1
    assert _balanced(bq_summary) and _balanced(csv_summary)
    assert _events(tmp_path / "bq") == _events(tmp_path / "csv")
    # The SQL BigQuery ran: only the mapped columns, the window as parameters (no value in the text).
    job = next(j for j in warehouse["client"].list_jobs(max_results=50)
               if getattr(j, "query", None) and warehouse["dataset"] in j.query)
    # Rows after the wall clock + tolerance are read whatever --until says (the transform rejects them).
    assert ("WHERE (`ts` IS NULL OR (`ts` >= @mpetl_since AND (`ts` < @mpetl_until OR `ts` > @mpetl_future)))"
            in job.query)
    assert "2026" not in job.query and "SELECT `order_id`" in job.query
    read = orjson.loads(next(line for line in bq_run.stderr.splitlines() if "bigquery_read" in line))
    assert (read["method"], read["window_pushed_down"]) == ("query", True)


def test_missing_table_or_column_is_one_line_exit_2_and_other_sources_go_on(run_mpetl, tmp_path, warehouse):
    bq = {"kind": "bigquery", "project": EMULATOR_PROJECT, "api_endpoint": warehouse["endpoint"]}
    sources = [
        {"name": "no_table", **bq, "table": f"{EMULATOR_PROJECT}.{warehouse['dataset']}.missing"},
        {"name": "no_column", **bq, "table": warehouse["table"], "columns": {**COLUMNS, "client_id": "ga_client"}},
        {"name": "bad_query", **bq, "query": f"SELECT nope FROM `{warehouse['table']}`"},
        {"name": "csv", "kind": "csv", "path": str(warehouse["csv"])},
    ]
    result, summary = _run(run_mpetl, _config(tmp_path, sources), tmp_path / "out")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    errors = {e["source"]: e["error"] for e in summary["source_errors"]}
    assert set(errors) == {"no_table", "no_column", "bad_query"}
    assert all("\n" not in e for e in errors.values())
    assert "missing" in errors["no_table"] and "not found" in errors["no_table"].lower()
    assert f"{warehouse['table']}, column 'ga_client'" in errors["no_column"]
    assert "nope" in errors["bad_query"]
    assert summary["sources"]["csv"]["rows_in"] == N_ROWS and _balanced(summary)


def test_chunks_are_pages_of_chunk_rows_over_rest_and_the_storage_read_api(warehouse, bigquery_emulator, capfd):  # noqa: F811
    """Bounded memory: rows arrive page by page (REST) or message by message (Storage Read API) and
    leave in chunks of chunk_rows, numbered in order; both paths give the CSV's canonical text."""
    from etl.extract.kinds.bigquery import BigQueryReader

    csv = SourceConfig(name="s", kind="csv", path=warehouse["csv"], columns=COLUMNS)
    expected = [c.frame for c in iter_source_chunks(csv)][0]
    grpc_port = _grpc_port(bigquery_emulator)
    for options in ({}, {"read_api_endpoint": f"127.0.0.1:{grpc_port}"}):
        source = SourceConfig(name="s", kind="bigquery", path="bigquery", table=warehouse["table"],
                              project=EMULATOR_PROJECT, api_endpoint=warehouse["endpoint"], columns=COLUMNS,
                              options=options)
        capfd.readouterr()
        chunks = list(iter_source_chunks(source, chunk_rows=5))
        read = orjson.loads(next(line for line in capfd.readouterr().err.splitlines() if "bigquery_read" in line))
        assert (read["method"], read["storage_api"]) == ("list_rows", bool(options))
        assert [len(c.frame) for c in chunks] == [5, 5, 5, 5, 4]
        frame = pd.concat([c.frame for c in chunks], ignore_index=True)
        assert frame["row"].tolist() == list(range(1, N_ROWS + 1))
        got = frame.sort_values("transaction_id").reset_index(drop=True).drop(columns=["row"])
        want = expected.sort_values("transaction_id").reset_index(drop=True).drop(columns=["row"])
        assert got["timestamp"].str.endswith("+0000").sum() == N_ROWS - 1
        assert got.drop(columns=["timestamp"]).equals(want.drop(columns=["timestamp"]))
        reader = BigQueryReader(source)
        assert reader.header == ["order_id", "ts", "amount", "client", "currency", "consent", "items"]


def _grpc_port(rest_endpoint: str) -> int:
    """The emulator's gRPC (Storage Read API) port, from its command line."""
    import psutil

    rest_port = rest_endpoint.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "bqemulator" in " ".join(cmd) and rest_port in cmd:
            return int(cmd[cmd.index("--grpc-port") + 1])
    pytest.skip("cannot find the emulator's gRPC port")


def test_datetime_and_date_columns_read_a_margin_and_the_transform_cuts_exactly(warehouse):
    """A DATETIME is local time: the SQL reads a few hours either side, never less than the window."""
    from google.cloud import bigquery

    client, table = warehouse["client"], f"{EMULATOR_PROJECT}.{warehouse['dataset']}.local_times"
    client.create_table(bigquery.Table(table, schema=[bigquery.SchemaField("order_id", "STRING"),
                                                      bigquery.SchemaField("at", "DATETIME"),
                                                      bigquery.SchemaField("day", "DATE"),
                                                      bigquery.SchemaField("at_text", "STRING")]))
    rows = [{"order_id": f"L{h}", "at": (dt.datetime(2026, 11, 19) + dt.timedelta(hours=h)).isoformat(),
             "day": (dt.date(2026, 11, 19) + dt.timedelta(days=h // 24)).isoformat(),
             "at_text": (dt.datetime(2026, 11, 19) + dt.timedelta(hours=h)).isoformat()} for h in range(-36, 60, 2)]
    rows.append({"order_id": "Lnull", "at": None, "day": None, "at_text": None})
    rows.append({"order_id": "Ltext", "at": None, "day": None, "at_text": "11/19/2026 3:00 PM"})
    assert client.insert_rows_json(table, rows) == []
    since, until = dt.datetime(2026, 11, 19, 5, tzinfo=dt.UTC), dt.datetime(2026, 11, 20, 5, tzinfo=dt.UTC)

    def read(field: str, **options) -> set[str]:
        source = SourceConfig(name="s", kind="bigquery", path="bigquery", table=table, project=EMULATOR_PROJECT,
                              api_endpoint=warehouse["endpoint"], timezone="America/New_York",
                              columns={"transaction_id": "order_id", "timestamp": field}, options=options)
        return {t for c in iter_source_chunks(source, since=since, until=until) for t in c.frame["transaction_id"]}

    # New York is UTC-5: the window is 00:00–24:00 local on the 19th; 3 h of margin either side.
    assert read("at") == {f"L{h}" for h in range(-36, 60, 2) if -3 <= h <= 27} | {"Lnull", "Ltext"}
    # A DATE is widened to whole days: the 18th (3 h before the 19th's midnight) to the 20th.
    assert read("day") == {f"L{h}" for h in range(-36, 60, 2) if -24 <= h < 48} | {"Lnull", "Ltext"}
    # Text times: all read without a hint; with one, a day either side, and text it cannot cast is read.
    assert len(read("at_text")) == len(rows)
    assert read("at_text", timestamp_type="DATETIME") == \
        {f"L{h}" for h in range(-36, 60, 2) if -27 <= h <= 51} | {"Lnull", "Ltext"}
    with pytest.raises(SourceError) as info:
        read("at_text", timestamp_type="NUMBER")
    assert info.value.column == "at_text" and "timestamp_type" in info.value.message


def test_bad_identifiers_never_reach_the_sql(warehouse):
    for table in ("demo.shop.or`ders", "demo.sh-op.orders", "orders"):
        source = SourceConfig(name="s", kind="bigquery", path="bigquery", table=table,
                              api_endpoint=warehouse["endpoint"], columns=COLUMNS)
        with pytest.raises(SourceError) as info:
            list(iter_source_chunks(source))
        assert "\n" not in str(info.value) and str(info.value).startswith(f"bigquery:{table}")



def test_sources_preview_shows_the_schema_and_the_first_events(run_mpetl, tmp_path, warehouse):
    config = _config(tmp_path, _sources(warehouse)[1:])
    result = run_mpetl("sources", "--config", str(config), "-n", "3", "--now", NOW, env={"MP_API_SECRET": None}, clock=NOW)
    assert result.returncode == 0, result.stderr
    decoder, text, previews, at = json.JSONDecoder(), result.stdout, [], 0
    while text[at:].strip():  # one indented JSON object per source
        at += len(text[at:]) - len(text[at:].lstrip())
        preview, at = decoder.raw_decode(text, at)
        previews.append(preview)
    assert [p["source"] for p in previews] == ["bq_table", "bq_query"]
    for p in previews:
        assert p["columns_found"] == ["order_id", "ts", "amount", "client", "currency", "consent", "items"]
        assert 0 < len(p["events"]) + len(p["rejected_rows"]) + len(p["deferred_rows"]) <= 3


class _RefusingReadApi:
    """A gRPC server that answers every Storage Read API call as Google does for a credential
    without `bigquery.readsessions.create`: PERMISSION_DENIED."""

    def __enter__(self) -> str:
        from concurrent import futures

        import grpc

        class Refuse(grpc.GenericRpcHandler):
            def service(self, handler_call_details):
                def deny(request, context):
                    context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                  "Permission denied: bigquery.readsessions.create")
                return grpc.unary_unary_rpc_method_handler(deny)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[Refuse()])
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        return f"127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


def test_a_refused_storage_read_api_falls_back_to_rest_pages(warehouse, capfd):
    with _RefusingReadApi() as endpoint:
        source = SourceConfig(name="s", kind="bigquery", path="bigquery", table=warehouse["table"],
                              project=EMULATOR_PROJECT, api_endpoint=warehouse["endpoint"], columns=COLUMNS,
                              options={"read_api_endpoint": endpoint})
        capfd.readouterr()
        chunks = list(iter_source_chunks(source, chunk_rows=10))
    assert sorted(t for c in chunks for t in c.frame["transaction_id"]) == [f"BQ-{i:03d}" for i in range(N_ROWS)]
    logged = [orjson.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert {"event": "bigquery_storage_api_refused", "source": "s", "reason": "PermissionDenied"}.items() <= \
        next(e for e in logged if e["event"] == "bigquery_storage_api_refused").items()


def test_a_table_dropped_mid_read_is_one_line_naming_the_row(warehouse):
    """A dbt run replacing the table while we page through it: the error names the first row not read."""
    from google.cloud import bigquery

    client = warehouse["client"]
    table = f"{EMULATOR_PROJECT}.{warehouse['dataset']}.replaced"
    client.create_table(bigquery.Table(table, schema=client.get_table(warehouse["table"]).schema))
    assert client.insert_rows_json(table, _rows()) == []
    source = SourceConfig(name="s", kind="bigquery", path="bigquery", table=table, project=EMULATOR_PROJECT,
                          api_endpoint=warehouse["endpoint"], columns=COLUMNS)
    chunks = iter_source_chunks(source, chunk_rows=5)
    first = next(chunks)
    assert first.frame["row"].tolist() == [1, 2, 3, 4, 5]
    client.delete_table(table)
    with pytest.raises(SourceError) as info:
        list(chunks)
    err = info.value
    assert err.path == f"bigquery:{table}" and err.row is not None and 5 < err.row <= 11
    assert "\n" not in str(err) and "reading failed from this row on" in err.message


def test_a_row_dated_after_the_wall_clock_is_read_and_rejected_whatever_until_pushes_down(run_mpetl, tmp_path, warehouse):
    # Three days after the (pinned) wall clock: a typo in the CRM. --until ends long before it, yet the
    # row must be read and rejected, never skipped by the WHERE night after night.
    ahead = {**_rows()[0], "order_id": "BQ-AHEAD", "ts": "2026-11-24T09:00:00Z"}
    assert warehouse["client"].insert_rows_json(warehouse["table"], [ahead]) == []
    with warehouse["csv"].open("a") as f:
        f.write(_csv([ahead]).splitlines()[1] + "\n")
    config = _config(tmp_path, _sources(warehouse))
    window = ("--since", "2026-11-19T00:00:00Z", "--until", "2026-11-20T12:00:00Z")
    runs = {name: _run(run_mpetl, config, tmp_path / name, "--source", name, *window) for name in ("csv", "bq_table")}
    for name, (result, summary) in runs.items():
        assert result.returncode == 0, result.stderr
        rejects = [orjson.loads(line) for line in (tmp_path / name / "rejects.ndjson").read_bytes().splitlines()]
        (future,) = [r for r in rejects if any("in the future" in x["description"] for x in r["reasons"])]
        assert future["reasons"] == [{"fieldPath": "events[0].timestamp_micros", "validationCode": "VALUE_OUT_OF_BOUNDS",
                                      "description": "column 'ts' is in the future (beyond 5 min of clock skew)"}]
        assert _balanced(summary) and summary["sources"][name]["reject_codes"]["VALUE_OUT_OF_BOUNDS"] == 1
    (_, csv), (_, bq) = runs["csv"], runs["bq_table"]
    assert bq["rejected"] == csv["rejected"] and _events(tmp_path / "bq_table") == _events(tmp_path / "csv")
    assert bq["rows_in"] == csv["rows_in"] - csv["outside_window"]  # BigQuery never returned the other nights
