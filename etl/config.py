"""Typed configuration, loaded from TOML.

Why a typed layer: a nightly job should fail at start-up, naming the file, the key and what was
expected, not halfway through a send. Relative paths resolve against ``base_dir`` (itself relative to
the config file, default: the config file's folder), so cron and Airflow get the same files whatever
their working directory. The API secret is never read from TOML: only from ``MP_API_SECRET`` or the
file named by ``destination.api_secret_file``.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import ConfigError

GOOGLE_ENDPOINT = "https://www.google-analytics.com"
GOOGLE_EU_ENDPOINT = "https://region1.google-analytics.com"

SOURCE_KINDS = ("csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery")
# `scheme://…` is a URL on an object store (gs://, s3://, memory://, file://): never resolved against base_dir.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CONSENT_DEFAULTS = ("deny", "grant", "omit")
SECRET_ENV = "MP_API_SECRET"


@dataclass(frozen=True)
class PropertyConfig:
    measurement_id: str
    timezone: str
    property_id: str | None = None


@dataclass(frozen=True)
class DestinationConfig:
    endpoint: str = GOOGLE_ENDPOINT
    concurrency: int = 32
    timeout_s: float = 10.0
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    api_secret_file: Path | None = None
    request_deadline_s: float = 60.0  # one request's whole exchange, connect to last byte
    deadline_s: float | None = 4 * 3600.0  # the whole send; what is left stays pending (exit 8)


@dataclass(frozen=True)
class WindowConfig:
    """The 72 h backdating window and the rules that turn local times into exact UTC micros."""

    max_age_hours: float = 72.0
    safety_margin_minutes: float = 60.0
    future_tolerance_minutes: float = 5.0
    date_only_time: str = "00:00:00"
    ambiguous: str = "earliest"  # or "latest": which of the two instants a repeated local time means
    nonexistent: str = "shift_forward"  # a local time skipped by DST moves to the first valid instant


@dataclass(frozen=True)
class IdentityMapConfig:
    path: Path | str  # str: a URL on an object store
    key: str
    client_id: str
    source_key: str | None = None  # the source's column to join on; default: same name as `key`


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    path: Path | str  # str: a URL on an object store; for kind "bigquery", a label (bigquery:<table> or bigquery:query)
    event: str = "purchase"
    timezone: str = "UTC"
    columns: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # declared extra params: name -> column
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str = "."
    thousands: str | None = None
    identity_map: IdentityMapConfig | None = None
    consent_default: str = "deny"
    on_pii: str = "reject"  # or "drop": drop the offending field instead of the row
    send_user_id: bool = False
    # Send engagement_time_msec (1) on every event: only for a source that really measured engagement.
    # Google counts a user as active when the param arrives; an offline conversion is not engagement.
    engagement_time: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific (stage names, refunds…)
    # kind = "bigquery": exactly one of table ("project.dataset.table") or query (standard SQL)
    table: str | None = None
    query: str | None = None
    project: str | None = None  # billing project; default: the credentials' project
    location: str | None = None
    api_endpoint: str | None = None  # a local BigQuery API (tests); None: Google's


@dataclass(frozen=True)
class ReconcileConfig:
    backend: str = "duckdb"  # or "bigquery"
    store: Path | None = None  # duckdb: the collector's data dir or a folder of exported files
    project: str | None = None
    dataset: str | None = None
    location: str | None = None
    api_endpoint: str | None = None  # a local BigQuery API (tests); None: Google's
    tolerance: float = 0.0  # share of sent events allowed missing on final dates
    provisional_hours: float = 72.0
    maximum_bytes_billed: int = 10 * 1024**3


@dataclass(frozen=True)
class HistoricalConfig:
    """Where deferred events go at their true date ([historical]; README "Deferred events").

    bigquery: `table` is "dataset.table" or "project.dataset.table", partitioned by `event_day`.
    duckdb: files `<path>/<table>_YYYYMMDD.<run_id>.ndjson` (default path: state/historical).
    """

    table: str
    backend: str = "duckdb"  # or "bigquery"
    project: str | None = None
    location: str | None = None
    api_endpoint: str | None = None  # a local BigQuery API (tests); None: Google's
    path: Path | None = None
    timeout_s: float = 120.0  # bigquery: each API call, retries included; then the run reports the error


@dataclass(frozen=True)
class Config:
    file: Path
    base_dir: Path
    property: PropertyConfig
    destination: DestinationConfig
    ledger_path: Path
    window: WindowConfig
    sources: tuple[SourceConfig, ...]
    reconcile: ReconcileConfig
    privacy_extra_params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    historical: HistoricalConfig | None = None  # None: deferred events go to deferred.csv only
    ledger_url: str | None = None  # [ledger] url: a shared PostgreSQL ledger (wins over path)

    @property
    def ledger_location(self) -> str | Path:
        """What `open_ledger` opens: the PostgreSQL URL when configured, else the SQLite file."""
        return self.ledger_url or self.ledger_path

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def _url_has_password(url: str) -> bool:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def read_api_secret(dest: DestinationConfig) -> str | None:
    """The API secret from the environment, else from the configured file; None when neither."""
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return secret.strip()
    if dest.api_secret_file is not None and dest.api_secret_file.exists():
        return dest.api_secret_file.read_text().strip() or None
    return None


class _Reader:
    """Reads typed values from a TOML table, naming file and key in every error."""

    def __init__(self, file: Path, table: dict[str, Any], prefix: str) -> None:
        self.file, self.table, self.prefix = file, table, prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, expected: str) -> ConfigError:
        return ConfigError(str(self.file), self._key(key), expected)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise self.error(key, f"is required ({expected or _type_name(kind)})")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {expected or _type_name(kind)}, got {type(value).__name__}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def zone(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default, expected="an IANA time zone such as 'Europe/London'")
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
            raise self.error(key, f"expected an IANA time zone such as 'Europe/London', got {value!r}") from None
        return value

    def table_of(self, key: str) -> _Reader:
        sub = self.get(key, dict, {})
        return _Reader(self.file, sub, self._key(key))

    def string_map(self, key: str) -> dict[str, str]:
        sub = self.get(key, dict, {})
        for k, v in sub.items():
            if not isinstance(v, str):
                raise ConfigError(str(self.file), f"{self._key(key)}.{k}", "expected a column name (string)")
        return dict(sub)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_TABLE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _historical(r: _Reader, resolve: Any) -> HistoricalConfig | None:
    """[historical]: absent or without `table`, nothing changes."""
    table = r.get("table", str, None)
    if not table:
        return None
    backend = r.choice("backend", ("duckdb", "bigquery"), "duckdb")
    project = r.get("project", str, None)
    parts = table.split(".")
    shape = "dataset.table or project.dataset.table" if backend == "bigquery" else "a plain name such as 'historical'"
    if (backend == "duckdb" and len(parts) != 1) or (backend == "bigquery" and len(parts) not in (2, 3)) \
            or not all(_TABLE_PART.match(p) for p in parts[-2:]):
        raise r.error("table", f"expected {shape}, got {table!r}")
    if parts[-1].lower().startswith("events"):
        # `events_*` (BigQuery wildcard, the collector's store) would read it as GA4's own export.
        raise r.error("table", f"must not start with 'events' (it would match events_*), got {table!r}")
    if backend == "bigquery" and len(parts) == 2 and not project:
        raise r.error("project", "backend 'bigquery' needs project, or table as project.dataset.table")
    path = r.get("path", str, "state/historical")
    return HistoricalConfig(
        table=table, backend=backend, project=project, location=r.get("location", str, None),
        api_endpoint=r.get("api_endpoint", str, None), path=resolve(path) if backend == "duckdb" else None,
        timeout_s=r.get("timeout_s", float, 120.0),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and check a TOML config; raises ConfigError naming the file and key."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), "-", "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), "-", f"is not valid TOML ({exc})") from None
    top = _Reader(file, raw, "")
    base_dir = (file.parent / top.get("base_dir", str, ".")).resolve()

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else base_dir / q

    def resolve_file(p: str) -> Path | str:
        """A source file: a URL stays as written (base_dir is for local paths only)."""
        return p if _URL_SCHEME.match(p) else resolve(p)

    prop_r = top.table_of("property")
    if not prop_r.table:
        raise top.error("property", "is required: measurement_id and timezone")
    measurement_id = prop_r.get("measurement_id", str)
    if not measurement_id.startswith("G-"):
        raise prop_r.error("measurement_id", f"expected a web stream id like 'G-XXXXXXX', got {measurement_id!r}")
    prop = PropertyConfig(
        measurement_id=measurement_id,
        timezone=prop_r.zone("timezone"),
        property_id=str(prop_r.get("property_id", (str, int), "")) or None,
    )

    dest_r = top.table_of("destination")
    if "api_secret" in dest_r.table or "api_secret" in raw:
        raise dest_r.error("api_secret", f"must not be in the config file: set {SECRET_ENV} or destination.api_secret_file")
    region = dest_r.choice("region", ("global", "eu"), "global")
    default_endpoint = GOOGLE_EU_ENDPOINT if region == "eu" else GOOGLE_ENDPOINT
    endpoint = dest_r.get("endpoint", str, default_endpoint).rstrip("/")
    if endpoint != "local" and not endpoint.startswith(("http://", "https://")):
        raise dest_r.error("endpoint", f"expected an http(s) URL or \"local\" (the project's endpoint), got {endpoint!r}")
    secret_file = dest_r.get("api_secret_file", str, None)
    dest = DestinationConfig(
        endpoint=endpoint,
        concurrency=dest_r.get("concurrency", int, 32),
        timeout_s=dest_r.get("timeout_s", float, 10.0),
        max_attempts=dest_r.get("max_attempts", int, 6),
        backoff_base_s=dest_r.get("backoff_base_s", float, 0.5),
        backoff_max_s=dest_r.get("backoff_max_s", float, 30.0),
        api_secret_file=resolve(secret_file) if secret_file else None,
        request_deadline_s=dest_r.get("request_deadline_s", float, 60.0),
        deadline_s=dest_r.get("deadline_s", float, 4 * 3600.0),
    )
    if dest.request_deadline_s <= 0 or (dest.deadline_s is not None and dest.deadline_s <= 0):
        raise dest_r.error("deadline_s", "deadline_s and request_deadline_s must be more than 0 seconds")
    if dest.concurrency < 1 or dest.max_attempts < 1:
        raise dest_r.error("concurrency", "concurrency and max_attempts must be at least 1")

    ledger_r = top.table_of("ledger")
    ledger_path = resolve(ledger_r.get("path", str, "state/ledger.sqlite"))
    ledger_url = ledger_r.get("url", str, None)
    if ledger_url is not None and not ledger_url.startswith(("postgresql://", "postgres://")):
        raise ledger_r.error("url", "expected a PostgreSQL URL such as postgresql://user@host:5432/db")
    if ledger_url is not None and _url_has_password(ledger_url):
        # A password in the config would reach logs and error messages: libpq reads it from elsewhere.
        raise ledger_r.error("url", "must not hold a password: put it in ~/.pgpass or PGPASSWORD")

    win_r = top.table_of("window")
    window = WindowConfig(
        max_age_hours=win_r.get("max_age_hours", float, 72.0),
        safety_margin_minutes=win_r.get("safety_margin_minutes", float, 60.0),
        future_tolerance_minutes=win_r.get("future_tolerance_minutes", float, 5.0),
        date_only_time=win_r.get("date_only_time", str, "00:00:00"),
        ambiguous=win_r.choice("ambiguous", ("earliest", "latest"), "earliest"),
        nonexistent=win_r.choice("nonexistent", ("shift_forward", "shift_backward"), "shift_forward"),
    )
    if window.max_age_hours > 72:
        raise win_r.error("max_age_hours", "must be at most 72: GA4 does not accept older events")

    sources_raw = top.get("sources", list, [])
    if not sources_raw:
        raise top.error("sources", "expected at least one [[sources]] table")
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for i, s in enumerate(sources_raw):
        if not isinstance(s, dict):
            raise top.error(f"sources[{i}]", "expected a table")
        sr = _Reader(file, s, f"sources[{i}]")
        name = sr.get("name", str)
        if name in seen or "|" in name:
            raise sr.error("name", f"must be unique and contain no '|', got {name!r}")
        seen.add(name)
        sr.prefix = f"sources.{name}"
        idm = None
        if "identity_map" in s:
            ir = sr.table_of("identity_map")
            idm = IdentityMapConfig(
                path=resolve_file(ir.get("path", str)),
                key=ir.get("key", str),
                client_id=ir.get("client_id", str),
                source_key=ir.get("source_key", str, None),
            )
        kind = sr.choice("kind", SOURCE_KINDS, "csv")
        table, query = sr.get("table", str, None), sr.get("query", str, None)
        if kind == "bigquery":
            if (table is None) == (query is None):
                raise sr.error("table", "kind 'bigquery' needs exactly one of table (\"project.dataset.table\") or query")
            path: Path | str = f"bigquery:{table}" if table else "bigquery:query"
        else:
            path = resolve_file(sr.get("path", str))
        sources.append(
            SourceConfig(
                name=name,
                kind=kind,
                path=path,
                event=sr.get("event", str, "purchase"),
                timezone=sr.zone("timezone", "UTC"),
                columns=sr.string_map("columns"),
                params=sr.string_map("params"),
                encoding=sr.get("encoding", str, None),
                delimiter=sr.get("delimiter", str, None),
                decimal=sr.choice("decimal", (".", ","), "."),
                thousands=sr.get("thousands", str, None),
                identity_map=idm,
                consent_default=sr.choice("consent_default", CONSENT_DEFAULTS, "deny"),
                on_pii=sr.choice("on_pii", ("reject", "drop"), "reject"),
                send_user_id=sr.get("send_user_id", bool, False),
                engagement_time=sr.get("engagement_time", bool, False),
                options=sr.get("options", dict, {}),
                table=table,
                query=query,
                project=sr.get("project", str, None),
                location=sr.get("location", str, None),
                api_endpoint=sr.get("api_endpoint", str, None),
            )
        )

    rec_r = top.table_of("reconcile")
    store = rec_r.get("store", str, None)
    reconcile = ReconcileConfig(
        backend=rec_r.choice("backend", ("duckdb", "bigquery"), "duckdb"),
        store=resolve(store) if store else None,
        project=rec_r.get("project", str, None),
        dataset=rec_r.get("dataset", str, None),
        location=rec_r.get("location", str, None),
        api_endpoint=rec_r.get("api_endpoint", str, None),
        tolerance=rec_r.get("tolerance", float, 0.0),
        provisional_hours=rec_r.get("provisional_hours", float, 72.0),
        maximum_bytes_billed=rec_r.get("maximum_bytes_billed", int, 10 * 1024**3),
    )
    if reconcile.backend == "bigquery" and not (reconcile.project and reconcile.dataset):
        raise rec_r.error("project", "backend 'bigquery' needs project and dataset (analytics_<property_id>)")

    priv_r = top.table_of("privacy")
    extra_params: dict[str, tuple[str, ...]] = {}
    for event, names in priv_r.get("extra_params", dict, {}).items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise priv_r.error(f"extra_params.{event}", "expected a list of param names")
        extra_params[event] = tuple(names)

    return Config(
        historical=_historical(top.table_of("historical"), resolve),
        privacy_extra_params=extra_params,
        file=file.resolve(),
        base_dir=base_dir,
        property=prop,
        destination=dest,
        ledger_path=ledger_path,
        ledger_url=ledger_url,
        window=window,
        sources=tuple(sources),
        reconcile=reconcile,
    )
