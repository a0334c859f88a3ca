"""Source files on object stores: a URL path is opened through fsspec, a local path as before.

The stores here are fsspec's own `memory://` (in-process), `file://` (a local file named by URL) and
`s3://` through s3fs against moto's S3 server on 127.0.0.1 (offline): the same code path as `gs://`,
whose back end (gcsfs) is an optional extra like s3fs.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import socket
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import fsspec.implementations.memory
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.accounting import Buckets
from etl.config import load_config
from etl.errors import SourceError
from tests.extract.conftest import SAMPLES, read_all, source
from tests.support import SAMPLES_CONFIG, SAMPLES_NOW, dump_toml

GENERIC = SAMPLES / "generic" / "closed_deals.csv"


def _generic_source() -> dict:
    """The samples' German CRM export (cp1252, ';', decimal comma) as configured in samples.toml."""
    data = tomllib.loads(SAMPLES_CONFIG.read_text())
    return next(s for s in data["sources"] if s["name"] == "generic_de")


def _config(tmp_path: Path, path: str, **extra) -> Path:
    data = tomllib.loads(SAMPLES_CONFIG.read_text())
    data["base_dir"] = str(tmp_path)
    data["ledger"] = {"path": str(tmp_path / "state" / "ledger.sqlite")}
    data["reconcile"] = {"store": str(tmp_path / "store")}
    data["sources"] = [{**_generic_source(), "path": path, **extra}]
    file = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    file.write_text(dump_toml(data))
    return file


def _memory_url(name: str, data: bytes) -> str:
    url = f"memory://mpetl-tests/{uuid.uuid4().hex[:8]}/{name}"
    with fsspec.open(url, "wb") as fh:
        fh.write(data)
    return url


def _generic(path) -> object:
    s = _generic_source()
    return source(path, "csv", name="generic_de", columns=s["columns"], encoding=s["encoding"],
                  delimiter=s["delimiter"], decimal=s["decimal"], thousands=s["thousands"])


def test_memory_csv_gzip_and_parquet_read_like_the_local_file(tmp_path):
    local, _ = read_all(_generic(GENERIC))
    raw = GENERIC.read_bytes()
    for url in (_memory_url("deals.csv", raw), _memory_url("deals.csv.gz", gzip.compress(raw))):
        frame, chunks = read_all(_generic(url), chunk_rows=7)
        assert frame.equals(local) and len(chunks) > 1 and chunks[0].path == url
    table = pa.table({"Order": ["A1", "A2", None], "Amount": [1.5, 2.25, 3.0]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    local_parquet = tmp_path / "t.parquet"
    local_parquet.write_bytes(buffer.getvalue())
    columns = {"transaction_id": "Order", "value": "Amount"}
    from_url, _ = read_all(source(_memory_url("t.parquet", buffer.getvalue()), "parquet", columns=columns))
    from_file, _ = read_all(source(local_parquet, "parquet", columns=columns))
    assert from_url.equals(from_file) and from_url["value"].tolist() == ["1.5", "2.25", "3"]


def test_url_errors_are_one_line_and_name_the_url():
    missing = f"memory://mpetl-tests/{uuid.uuid4().hex}/nope.csv"
    with pytest.raises(SourceError) as info:
        read_all(_generic(missing))
    assert str(info.value) == f"{missing}: file not found"
    # A structural problem is found by the strict re-read, through the store too.
    url = _memory_url("q.csv", b'Order,Amount,Client\nA1,1,c\nA2,2,"jane@example.com\nA3,3,c\n')
    with pytest.raises(SourceError) as info:
        read_all(source(url, columns={"transaction_id": "Order", "value": "Amount", "client_id": "Client"}))
    assert info.value.row == 2 and "jane" not in str(info.value) and info.value.path == url


class _FailingFile(io.BytesIO):
    """A store file whose connection breaks after 80 kB with the client's own exception type."""

    def _check(self) -> None:
        if self.tell() > 80_000:
            raise RuntimeError("connection reset; token=ya29.SECRET")

    def read(self, size=-1):
        self._check()
        return super().read(size)

    def readinto(self, buffer):
        self._check()
        return super().readinto(buffer)


class _FailingStore(fsspec.implementations.memory.MemoryFileSystem):
    """memory:// files, opened as _FailingFile."""

    protocol = ("failingmem",)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("failingmem://", "memory://", 1))

    def _open(self, path, mode="rb", **kwargs):
        return _FailingFile(super()._open(path, mode, **kwargs).getvalue())


def test_a_store_failing_mid_file_is_one_line_without_its_text():
    fsspec.register_implementation("failingmem", _FailingStore, clobber=True)
    body = "Order,Amount,Client\n" + "".join(f"A{i},{i},c{i}\n" for i in range(20_000))
    url = _memory_url("big.csv", body.encode()).replace("memory://", "failingmem://")
    columns = {"transaction_id": "Order", "value": "Amount", "client_id": "Client"}
    with pytest.raises(SourceError) as info:
        read_all(source(url, columns=columns), chunk_rows=1000)
    assert info.value.path == url and "cannot be read" in info.value.message
    assert "\n" not in str(info.value) and "SECRET" not in str(info.value)


@pytest.mark.parametrize(("url", "module", "extra"), [("gs://bucket/deals.csv", "gcsfs", "gcs"),
                                                       ("s3://bucket/deals.csv", "s3fs", "s3")])
def test_a_missing_cloud_back_end_names_the_extra_to_install(url, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(SourceError) as info:
        read_all(_generic(url))
    assert f"mpetl[{extra}]" in str(info.value) and "\n" not in str(info.value)


def test_config_keeps_urls_and_resolves_only_local_paths(tmp_path):
    config = load_config(_config(tmp_path, "file:///data/deals.csv"))
    assert config.sources[0].path == "file:///data/deals.csv"
    config = load_config(_config(tmp_path, "gs://bucket/exports/deals.csv"))
    assert config.sources[0].path == "gs://bucket/exports/deals.csv"
    config = load_config(_config(tmp_path, "exports/deals.csv"))
    assert config.sources[0].path == tmp_path / "exports" / "deals.csv"


def _requests(out: Path) -> list[bytes]:
    """The dry-run bodies without the run marker (a per-run id), in order."""
    lines = []
    for line in (out / "requests.ndjson").read_bytes().splitlines():
        body = orjson.loads(line)
        for event in body["events"]:
            event["params"].pop("mpetl_run", None)
        lines.append(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return lines


def test_file_url_runs_end_to_end_like_the_local_path(run_mpetl, tmp_path):
    runs = {}
    for name, path in (("local", str(GENERIC)), ("url", GENERIC.as_uri())):
        out = tmp_path / name
        result = run_mpetl("run", "--config", str(_config(tmp_path, path)), "--out", str(out), "--dry-run",
                           "--now", SAMPLES_NOW, env={"MP_API_SECRET": None}, clock=SAMPLES_NOW)
        assert result.returncode == 0, result.stderr
        runs[name] = (orjson.loads((out / "summary.json").read_bytes()), _requests(out))
    (local, local_requests), (url, url_requests) = runs["local"], runs["url"]
    assert url_requests == local_requests and len(url_requests) > 0
    for key in ("rows_in", "would_send", "rejected", "deferred", "duplicate"):
        assert url[key] == local[key], key


def test_memory_url_runs_end_to_end_through_the_cli(run_mpetl, tmp_path):
    """In-process (a memory:// store lives in this process), through the same CLI entry point, on rows
    timed in the last day by the real clock (an event's age is the wall clock's; this process's is real)."""
    now = datetime.now(UTC)
    lines = ["deal_id,closed_at,amount,ga_client,consent"]
    lines += [f"M{i},{(now - timedelta(hours=1 + i)):%Y-%m-%dT%H:%M:%SZ},12.50,{100 + i}.{1700000000 + i},yes"
              for i in range(30)]
    body = ("\n".join(lines) + "\n").encode()
    (tmp_path / "deals.csv").write_bytes(body)
    url = _memory_url("deals.csv", body)
    mapping = {"columns": {"transaction_id": "deal_id", "timestamp": "closed_at", "value": "amount",
                           "client_id": "ga_client", "consent_analytics": "consent"},
               "encoding": "utf-8", "delimiter": ",", "decimal": ".", "thousands": ",", "options": {"currency": "EUR"}}
    runs = {}
    for name, path in (("local", str(tmp_path / "deals.csv")), ("memory", url)):
        out = tmp_path / name
        result = run_mpetl("run", "--config", str(_config(tmp_path, path, **mapping)), "--out", str(out), "--dry-run")
        assert result.returncode == 0, result.stderr
        summary = orjson.loads((out / "summary.json").read_bytes())
        assert Buckets.from_summary(summary, where="summary.json").balanced()
        runs[name] = (summary, _requests(out))
    assert runs["memory"][1] == runs["local"][1]
    assert runs["memory"][0]["would_send"] == runs["local"][0]["would_send"] == 30


@pytest.fixture
def s3_server():
    """moto's S3 API on a free 127.0.0.1 port; the environment a worker would have (endpoint, keys)."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        yield env
    finally:
        server.stop()


def test_s3_url_runs_end_to_end_like_the_local_path(run_mpetl, tmp_path, s3_server):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="crm-exports")
    s3.put_object(Bucket="crm-exports", Key="nightly/closed_deals.csv.gz", Body=gzip.compress(GENERIC.read_bytes()))
    # A process per run: s3fs caches a filesystem per process, and its endpoint comes from the environment.
    env = {k: None for k in os.environ if k == "MP_API_SECRET" or k.startswith("AWS_")} | s3_server
    runs = {}
    for name, path in (("local", str(GENERIC)), ("s3", "s3://crm-exports/nightly/closed_deals.csv.gz"),
                       ("missing", "s3://crm-exports/nightly/nope.csv")):
        out = tmp_path / name
        result = run_mpetl("run", "--config", str(_config(tmp_path, path)), "--out", str(out), "--dry-run",
                           "--now", SAMPLES_NOW, env=env, clock=SAMPLES_NOW, process=True)
        runs[name] = (result, orjson.loads((out / "summary.json").read_bytes()))
    assert runs["local"][0].returncode == runs["s3"][0].returncode == 0, runs["s3"][0].stderr
    assert _requests(tmp_path / "s3") == _requests(tmp_path / "local") != []
    assert runs["s3"][1]["rows_in"] == runs["local"][1]["rows_in"]
    missing, summary = runs["missing"]
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert summary["source_errors"] == [{"source": "generic_de",
                                         "error": "s3://crm-exports/nightly/nope.csv: file not found"}]


def test_vendor_kinds_and_identity_maps_read_from_a_store_like_from_disk():
    from etl.config import IdentityMapConfig

    sf = SAMPLES / "crm" / "salesforce_opportunities.csv"
    local, _ = read_all(source(sf, "salesforce"))
    remote, _ = read_all(source(_memory_url(sf.name, sf.read_bytes()), "salesforce"))
    assert remote.equals(local) and len(local) > 0

    pos = SAMPLES / "pos"
    ids = pos / "customer_identity_map.csv"

    def square(path, id_path):
        idm = IdentityMapConfig(path=id_path, key="Square Customer ID", client_id="GA Cookie", source_key="Customer ID")
        return read_all(source(path, "square", identity_map=idm, options={"currency": "USD"}))[0]

    local = square(pos / "square_transactions.csv", ids)
    remote = square(_memory_url("tx.csv", (pos / "square_transactions.csv").read_bytes()),
                    _memory_url("ids.csv", ids.read_bytes()))
    assert remote.equals(local) and local["client_id"].notna().sum() > 0
    with pytest.raises(SourceError) as info:  # Square's item details sit beside a local transactions file
        read_all(source(_memory_url("tx.csv", b"x\n"), "square", options={"items_path": "items.csv"}))
    assert "items_path" in info.value.message
