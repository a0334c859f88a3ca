"""`mpetl init DIR`: a starting point a first-time user can edit rather than write from nothing.

Writes a commented config for one source kind (every key explained, the mapping laid out for that
kind), its JSON Schema (named in the config's `#:schema` line, for editors), a crontab line for `mpetl
nightly`, the Airflow DAG pointed at that config and the reconciliation notebook (papermill-ready). The config it
writes loads as is (`mpetl validate` then only needs the export file and the real measurement id), so
the first error a user meets is about their data, not about the template.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson

from etl.config import SOURCE_KINDS, json_schema

# Package data (pyproject's [tool.setuptools.package-data]): links in a checkout to jobs/airflow/ and
# notebooks/, copied as files into a wheel, so `pip install .` gives an `mpetl init` that writes both.
TEMPLATES = Path(__file__).resolve().parent / "templates"
DAG_SOURCE = TEMPLATES / "offline_conversions_dag.py"
NOTEBOOK_SOURCE = TEMPLATES / "reconciliation.ipynb"
DAG_DEFAULT_LINE = 'DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "samples.toml"'

HEADER = """\
#:schema ./mpetl.schema.json
# mpetl config ({kind} source). Check it with:  mpetl validate --config {config}
# Every key is checked: a typo is an error that names the key (`mpetl schema` prints the JSON Schema).
# Relative paths resolve against base_dir, itself relative to this file.
base_dir = "."

[property]
measurement_id = "{measurement_id}"   # Admin → Data streams → your web stream: G-…
timezone = "{timezone}"            # the property's reporting zone (Admin → Property details)
# property_id = "123456789"         # the BigQuery export dataset is analytics_<property_id>

[destination]
# The API secret is never in this file: set MP_API_SECRET, or name a file only this user can read.
# api_secret_file = "/etc/mpetl/api_secret"
# endpoint = "local"                # try everything against the project's own endpoint first
concurrency = 32                    # requests in flight (1-256)

[ledger]
path = "state/ledger.sqlite"        # what was sent: never delete it between runs

[reconcile]
backend = "duckdb"                  # "bigquery" with project and dataset for the real GA4 export
store = "state/collector"           # the local endpoint's store (or a folder of exported files)
# backend = "bigquery"
# project = "my-gcp-project"
# dataset = "analytics_123456789"

[[sources]]
name = "{kind}"
kind = "{kind}"
"""

# Said where the mapping is: under "deny", a source without a consent column rejects every row (a first real
# run of a template that left consent unmapped rejected everything).
CONSENT_NOTE = """\
# CONSENT FOLLOWS THE DATA. consent_default = "deny" REJECTS EVERY ROW of a source that maps no consent
# column. Name the column of your export that records analytics consent (yes/no, granted/denied, 1/0);
# if consent is recorded elsewhere (your consent platform), delete that line and set consent_default
# deliberately ("grant" sends every row as consented).
"""

SOURCES = {
    "csv": """\
path = "data/closed_deals.csv"
event = "purchase"                  # or close_convert_lead, qualify_lead, …
timezone = "{timezone}"            # zone of the file's times when they carry no offset
consent_default = "deny"            # rows whose consent cell is empty: deny (not sent) | grant | omit
# encoding = "utf-8"                # default: detected (BOM, UTF-8, then a detector, else cp1252)
# delimiter = ";"                   # default: sniffed from the header row
# decimal = ","                     # 1.234,56 with thousands = "."
[sources.columns]                   # MP field = the column's header in your file
client_id = "GA Client ID"          # a _ga cookie or a bare client id
timestamp = "Close Date"
transaction_id = "Deal ID"
value = "Amount"
currency = "Currency"
# session_id = "GA Session"         # a _ga_<ID> cookie or a bare session id (GA4 attributes the session)
{consent_note}consent_analytics = "Analytics Consent"
# [sources.filter]                  # only rows whose column holds one of these (case-insensitive)
# Stage = ["Closed Won"]
""",
    "parquet": """\
path = "data/closed_deals.parquet"
event = "purchase"
timezone = "{timezone}"
consent_default = "deny"
[sources.columns]
client_id = "ga_client_id"
timestamp = "closed_at"
transaction_id = "deal_id"
value = "amount"
currency = "currency"
{consent_note}consent_analytics = "analytics_consent"
# [sources.filter]
# stage = ["won"]
""",
    "salesforce": """\
path = "data/salesforce_opportunities.csv"   # an Opportunity report exported as CSV
event = "close_convert_lead"        # closed-won opportunities are converted leads
timezone = "{timezone}"
consent_default = "deny"
options = {{ won_stages = ["Closed Won"] }}   # other stages are left out as FILTERED (not errors)
# consent_default = "deny" REJECTS EVERY ROW when the export has no consent column: the default headers are
# 'Analytics Consent' and Analytics_Consent__c; map yours under [sources.columns] if it is named otherwise.
# [sources.columns]                 # only for headers that differ from Salesforce's defaults
# client_id = "GA_Client_ID__c"
# consent_analytics = "GA_Consent__c"
""",
    "hubspot": """\
path = "data/hubspot_deals.csv"     # Deals → Export
event = "purchase"
timezone = "{timezone}"
consent_default = "deny"
options = {{ won_stages = ["closedwon", "Closed Won"] }}
# consent_default = "deny" REJECTS EVERY ROW when the export has no consent column (default header:
# 'Analytics Consent'); map yours under [sources.columns] if it is named otherwise.
# [sources.columns]
# client_id = "GA Client ID"
# consent_analytics = "GA Consent"
""",
    "shopify": """\
path = "data/orders_export.csv"     # Orders → Export (one purchase per order, with its line items)
event = "purchase"
timezone = "{timezone}"
consent_default = "omit"            # a _ga cookie in the cart attributes means analytics consent
options = {{ refunds = true }}      # also a refund event per refunded order
""",
    "bigquery": """\
table = "my-project.crm.closed_deals"   # or, instead of table: query = "SELECT … FROM `my-project.crm.deals`"
project = "my-project"              # billing project; default: the credentials' project
# location = "EU"
event = "purchase"
timezone = "{timezone}"            # zone of DATETIME/DATE/text times (a TIMESTAMP is already an instant)
consent_default = "deny"
options = {{ maximum_bytes_billed = 10737418240 }}   # also timestamp_type, storage_api = false
[sources.columns]                   # canonical field = BigQuery column
client_id = "ga_client_id"
timestamp = "closed_at"
transaction_id = "deal_id"
value = "amount"
currency = "currency"
{consent_note}consent_analytics = "analytics_consent"
""",
    "square": """\
path = "data/square_transactions.csv"
event = "purchase"
timezone = "{timezone}"
consent_default = "omit"
options = {{ items_path = "square_item_details.csv", currency = "USD" }}
identity_map = {{ path = "data/customer_identity_map.csv", key = "Square Customer ID", client_id = "GA Cookie", source_key = "Customer ID" }}
""",
}

CRONTAB = """\
# mpetl nightly: `crontab -e` as the service user, paste these lines (see jobs/crontab.example).
CRON_TZ={timezone}
15 6 * * *  {mpetl} nightly --config {config} --out-root {out} >>{log} 2>&1 || echo "mpetl nightly exited $? (see {log})"
"""


def _mpetl_command() -> str:
    beside = Path(sys.executable).parent / "mpetl"
    return str(beside) if beside.exists() else (shutil.which("mpetl") or "mpetl")


def write_starter(folder: Path, *, kind: str, timezone: str, measurement_id: str, force: bool = False) -> list[Path]:
    """Write mpetl.toml, crontab.txt and the DAG into `folder`; refuse to overwrite unless `force`."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    folder = folder.resolve()
    config = folder / "mpetl.toml"
    files = {
        config: HEADER.format(kind=kind, config=config, measurement_id=measurement_id, timezone=timezone)
        + SOURCES[kind].format(timezone=timezone, consent_note=CONSENT_NOTE),
        # Editors with TOML + JSON Schema support (taplo / Even Better TOML) read the `#:schema` line.
        folder / "mpetl.schema.json": orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n",
        folder / "crontab.txt": CRONTAB.format(timezone=timezone, mpetl=_mpetl_command(), config=config,
                                               out=folder / "out", log=folder / "nightly.log"),
    }
    dag = DAG_SOURCE.read_text(encoding="utf-8")
    files[folder / "offline_conversions_dag.py"] = dag.replace(
        DAG_DEFAULT_LINE, f"DEFAULT_CONFIG = Path({str(config)!r})  # written by mpetl init", 1)
    files[folder / "reconciliation.ipynb"] = NOTEBOOK_SOURCE.read_text(encoding="utf-8")
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
