"""Typed configuration, loaded from TOML and checked by a pydantic model before anything runs.

Why a model and not a hand-written reader: a nightly job should fail at start-up, naming the file, the
key and what was expected, not halfway through a send, and never run with a typo silently ignored
(``timezon = …`` would shift every time by hours). Every table is one class with ``extra="forbid"``:
an unknown key or table is an error with a did-you-mean. Adding a key is adding a typed field to its
class; ``mpetl schema`` prints the JSON Schema of the whole file (editors autocomplete TOML with it).

Relative paths resolve against ``base_dir`` (itself relative to the config file, default: the config
file's folder), so cron and Airflow get the same files whatever their working directory. The API
secret is never read from TOML: only from ``MP_API_SECRET`` or the file named by
``destination.api_secret_file``.

The classes are pydantic dataclasses so code and tests can build them directly (``SourceConfig(name=…,
kind=…, path=…)``, ``dataclasses.replace``). Checks that only make sense for a user's file (paths that
must exist, the event name of a source) run only when loading a file, so a test can still build a
source with a bad event name and see the transform reject its rows.

Adding a key: a typed field with a default on its table's class (`LedgerConfig.url`, say); a new
table: a new class with `config=_TABLE` and a field on `ConfigFile` (plus one on `Config` when code
reads it). Unknown-key errors, did-you-mean and the schema follow from the classes.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import tomllib
import types
import typing
import zoneinfo
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass

from etl.errors import ConfigError, ConfigProblems

GOOGLE_ENDPOINT = "https://www.google-analytics.com"
GOOGLE_EU_ENDPOINT = "https://region1.google-analytics.com"
DATA_MANAGER_ENDPOINT = "https://datamanager.googleapis.com"
API_MEASUREMENT_PROTOCOL = "measurement_protocol"
API_DATA_MANAGER = "data_manager"

SOURCE_KINDS = ("csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery")
# `scheme://…` is a URL on an object store (gs://, s3://, memory://, file://): never resolved against base_dir.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CONSENT_DEFAULTS = ("deny", "grant", "omit")
SECRET_ENV = "MP_API_SECRET"

# MP naming rules (etl/protocol/rules.py holds the same; the config must not import a stage).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_RESERVED_PREFIXES = ("google_", "ga_", "firebase_")
_FIREBASE_APP_ID = re.compile(r"^\d+:\d+:(android|ios|web):[0-9a-f]+$")  # etl/protocol/place.py holds the same
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d{1,6})?)?\Z")

# allow_inf_nan=False: TOML writes `inf` and `nan`; no duration, share or count of this file is either (an
# infinite safety margin made the window negative and every event "too old").
_TABLE = ConfigDict(extra="forbid", str_strip_whitespace=False, validate_default=False, allow_inf_nan=False)


class KeyedError(ValueError):
    """A table-level check that blames one key of the table (the error names `sources.bq.table`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _from_file(info: ValidationInfo) -> bool:
    """True while loading a user's file (load_config passes a context); False for direct construction."""
    return bool(info.context) and "base_dir" in info.context


# --- field types ---------------------------------------------------------------------------------

def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        raise ValueError(f"expected an IANA time zone such as 'Europe/London', got {value!r}") from None
    return value


def _non_empty_path(value: Any) -> Any:
    """An empty string would be the base folder itself ("" is "."): never what the user meant."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("expected a path, got an empty string (leave the key out for the default)")
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    if _from_file(info) and not value.is_absolute():
        return Path(info.context["base_dir"]) / value
    return value


def _resolve_file(value: Path | str, info: ValidationInfo) -> Path | str:
    """A source file: a URL stays as written (base_dir is for local paths only); a local path resolves."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected a file path or URL, got an empty string")
        if _URL_SCHEME.match(value):
            return _no_credentials(value, "the store's own credentials (environment, ~/.aws, Google ADC) are used")
        value = Path(value)
    return _resolve(value, info)


def _encoding(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        codec = codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r} (try utf-8, utf-8-sig, utf-16, cp1252, latin-1)") from None
    # base64, hex, rot13, zlib, bz2, uu… are codecs of the stdlib too, but they turn bytes into bytes (or
    # str into str), not bytes into text: reading a file with one ended in a traceback.
    if not getattr(codec, "_is_text_encoding", True):
        raise ValueError(f"{value!r} is not a text encoding (try utf-8, utf-8-sig, utf-16, cp1252, latin-1)")
    return value


def _one_char(value: str | None) -> str | None:
    if value is not None and len(value) != 1 and value != "\\t":
        raise ValueError(f"expected a single character, got {value!r}")
    if value is not None and value.isalnum():
        raise ValueError(f"expected a punctuation or space character, got the letter or digit {value!r}")
    return "\t" if value == "\\t" else value


def _ledger_url(value: str) -> str:
    """A PostgreSQL URL without a password: libpq reads it from ~/.pgpass or PGPASSWORD, so it never
    reaches a log or an error (this message never repeats the value)."""
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected a PostgreSQL URL such as postgresql://user@host:5432/db")
    if _url_has_password(value):
        raise ValueError("must not hold a password: write postgresql://user@host/db and put the password in "
                         "~/.pgpass (or the file PGPASSFILE names) or PGPASSWORD; libpq reads them, mpetl never stores them")
    return value


def _time_of_day(value: str) -> str:
    if not _TIME_OF_DAY.match(value.strip()):
        raise ValueError(f"expected a time of day HH:MM[:SS], got {value!r}")
    return value


def _as_text(value: Any) -> Any:
    """A TOML integer where an id is expected (property_id = 123) is the same id."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _secret_file(value: Path, info: ValidationInfo) -> Path:
    if _from_file(info):
        if value.is_dir():
            raise ValueError("is a directory: point it at a file holding only the API secret")
        if value.exists() and not value.is_file():
            raise ValueError("is not a regular file: point it at a file holding only the API secret")
    return value


Zone = Annotated[str, AfterValidator(_zone)]
ConfigPath = Annotated[Path, BeforeValidator(_non_empty_path), AfterValidator(_resolve)]
# A name or id whose empty string means nothing (leave the key out for the default).
NonEmpty = Annotated[str, Field(min_length=1)]
FilePath = Annotated[Path | str, AfterValidator(_resolve_file)]  # str: a URL on an object store
SecretFile = Annotated[Path, AfterValidator(_resolve), AfterValidator(_secret_file)]
PositiveFloat = Annotated[float, Field(gt=0), BeforeValidator(lambda v: _no_bool(v))]
NonNegativeFloat = Annotated[float, Field(ge=0), BeforeValidator(lambda v: _no_bool(v))]
# Upper bounds: a huge number is a typo (or 1e300); the bounds are generous for every real use.
HOUR, DAY = 3600.0, 86400.0
Encoding = Annotated[str | None, AfterValidator(_encoding)]
OneChar = Annotated[str | None, AfterValidator(_one_char)]
StringList = Annotated[list[str], BeforeValidator(_as_list)]


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    if isinstance(value, str):
        raise ValueError(f"expected a number, got the string {value!r} (drop the quotes)")
    return value


# --- tables --------------------------------------------------------------------------------------

@dataclass(frozen=True, config=_TABLE)
class PropertyConfig:
    """`[property]`: the GA4 data stream (web: `measurement_id`; app: `firebase_app_id`) and the property's
    reporting zone (the export's event_date).

    One config sends to one stream. An app stream takes `firebase_app_id` in the URL and an
    `app_instance_id` in the body instead of `measurement_id` / `client_id` (MP reference), so every
    request of a run has one shape, and the ledger binds to one stream id.
    """

    measurement_id: Annotated[str | None, Field(pattern=r"^G-[A-Z0-9]+$", description="A web stream id: G- then capitals and digits.")] = None
    timezone: Zone | None = None  # required: checked below (a default would shift every event date)
    property_id: Annotated[str | None, BeforeValidator(_as_text), Field(pattern=r"^[0-9]+$")] = None
    # The web stream's numeric id (GA4 Admin → Data streams → Stream ID): the export's `stream_id`, which
    # the historical table's rows carry so they union with the export. Without it: the measurement id.
    stream_id: Annotated[str, BeforeValidator(_as_text), Field(pattern=r"^[0-9]+$")] | None = None

    # An app stream: Firebase console → Project settings → Your apps → App ID.
    firebase_app_id: Annotated[str | None, Field(pattern=_FIREBASE_APP_ID.pattern, description=(
        "An app stream's Firebase App ID such as 1:1234567890:android:321abc456def7890."))] = None

    @model_validator(mode="after")
    def _one_stream(self) -> PropertyConfig:
        if self.timezone is None:
            raise KeyedError("timezone", "is required (the property's reporting time zone, e.g. 'Europe/London')")
        if self.measurement_id and self.firebase_app_id:
            raise KeyedError("firebase_app_id", "a config sends to one stream: a web stream (measurement_id) or an app "
                             "stream (firebase_app_id), not both; write one config per stream, each with its own ledger")
        if not (self.measurement_id or self.firebase_app_id):
            raise KeyedError("measurement_id", "is required: a web stream's measurement_id (G-…), or an app stream's "
                             "firebase_app_id")
        return self

    @property
    def is_app(self) -> bool:
        return self.firebase_app_id is not None

    @property
    def mp_stream_id(self) -> str:
        """The stream's id as the query names it: the measurement id (web) or the Firebase App ID (app).
        Not `stream_id`: that is the export's numeric stream id, for the historical rows."""
        return self.firebase_app_id or self.measurement_id or ""

    @property
    def stream_param(self) -> str:
        """The query parameter that names the stream: measurement_id or firebase_app_id."""
        return "firebase_app_id" if self.is_app else "measurement_id"

    @property
    def identity_field(self) -> str:
        """The body's pseudonymous id: client_id (web) or app_instance_id (app)."""
        return "app_instance_id" if self.is_app else "client_id"


_SECRET_QUERY_KEYS = re.compile(
    r"(?i)^(?:password|passwd|pwd|sslpassword|secret|api[_-]?secret|api[_-]?key|key|token|access[_-]?token|auth"
    r"|sig|signature|x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential))$")


def _credentials_in(value: str) -> str | None:
    """Why a URL holds a credential (never the credential itself), or None."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.password is not None or "@" in parts.netloc:
        return "holds credentials (user:password@) in the URL"
    from urllib.parse import parse_qsl

    if any(_SECRET_QUERY_KEYS.match(key) for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return "holds a password, token or signature in its query"
    return None


def _no_credentials(value: Any, where: str) -> Any:
    if isinstance(value, str) and _URL_SCHEME.match(value):
        why = _credentials_in(value)
        if why:
            raise ValueError(f"{why}: credentials in a URL reach logs, reports and the ledger; {where}")
    return value


def _endpoint(value: str | None) -> str | None:
    if value is None or value == "local":
        return value
    value = value.rstrip("/")
    # Before anything that could echo the URL: an error message must never carry the password.
    _no_credentials(value, f"the API secret goes in {SECRET_ENV} or destination.api_secret_file, and an endpoint "
                           "needs no login")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError('expected an http(s) URL such as https://www.google-analytics.com, or "local" (the project\'s endpoint)')
    if parts.query or parts.fragment:
        raise ValueError("expected a base URL without ?query or #fragment (the API secret goes in MP_API_SECRET)")
    return value


@dataclass(frozen=True, config=_TABLE)
class DataManagerConfig:
    """`[destination.data_manager]`: Google's Data Manager API (`api = "data_manager"`, docs/data-manager.md).

    Credentials: a service-account JSON file, or Application Default Credentials when unset (never in
    this file). The destination is `[property] property_id` (operatingAccount GOOGLE_ANALYTICS_PROPERTY)
    and the web stream's measurement id (productDestinationId), as Google's field-mappings page says.
    Limits are Google's (limits page: 2,000 events a request, 300 requests/min and 100,000/day per
    Cloud project; best practices: ≤ 10 requests at once); lower them to share a project.
    """

    credentials_file: SecretFile | None = None  # None: Application Default Credentials
    product_destination_id: str | None = None  # default: [property] measurement_id
    concurrency: Annotated[StrictInt, Field(ge=1, le=10)] = 10
    max_events_per_request: Annotated[StrictInt, Field(ge=1, le=2000)] = 2000
    # Not documented for this API: half of the 10 MiB Google's front end allows other APIs.
    max_request_bytes: Annotated[StrictInt, Field(ge=10_000, le=10_485_760)] = 5_000_000
    requests_per_minute: Annotated[StrictInt, Field(ge=1, le=300)] = 300
    daily_request_quota: Annotated[StrictInt, Field(ge=1, le=100_000)] = 100_000
    # Requests counted per quota day (America/Los_Angeles), shared by this machine's runs.
    quota_file: ConfigPath = Path("state/datamanager_quota.json")


@dataclass(frozen=True, config=_TABLE)
class DestinationConfig:
    """`[destination]`: where requests go and how hard to push; `api` picks the protocol."""

    api: Literal["measurement_protocol", "data_manager"] = API_MEASUREMENT_PROTOCOL

    endpoint: Annotated[str | None, AfterValidator(_endpoint)] = None  # None: Google's, by region
    concurrency: Annotated[StrictInt, Field(ge=1, le=256)] = 32
    timeout_s: Annotated[PositiveFloat, Field(le=HOUR)] = 10.0
    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 6
    backoff_base_s: Annotated[PositiveFloat, Field(le=HOUR)] = 0.5
    backoff_max_s: Annotated[PositiveFloat, Field(le=DAY)] = 30.0
    api_secret_file: SecretFile | None = None
    region: Literal["global", "eu"] = "global"
    request_deadline_s: Annotated[PositiveFloat, Field(le=DAY)] = 60.0  # one request's whole exchange, connect to last byte
    # The whole send; what is left stays pending (exit 8). None: no deadline.
    deadline_s: Annotated[float | None, Field(gt=0, le=7 * DAY), BeforeValidator(_no_bool)] = 4 * 3600.0
    data_manager: DataManagerConfig = field(default_factory=DataManagerConfig)

    @model_validator(mode="after")
    def _defaults(self) -> DestinationConfig:
        if self.endpoint is None:
            google = GOOGLE_EU_ENDPOINT if self.region == "eu" else GOOGLE_ENDPOINT
            object.__setattr__(self, "endpoint", DATA_MANAGER_ENDPOINT if self.api == API_DATA_MANAGER else google)
        return self


@dataclass(frozen=True, config=_TABLE)
class LedgerConfig:
    """`[ledger]`: where the delivery state lives: a SQLite file, or a shared PostgreSQL (`url`, wins)."""

    path: ConfigPath = Path("state/ledger.sqlite")
    url: Annotated[str, AfterValidator(_ledger_url)] | None = None


@dataclass(frozen=True, config=_TABLE)
class WindowConfig:
    """`[window]`: the 72 h backdating window and the rules that turn local times into exact UTC micros."""

    max_age_hours: Annotated[float, Field(gt=0, le=72), BeforeValidator(_no_bool)] = 72.0
    safety_margin_minutes: Annotated[NonNegativeFloat, Field(lt=72 * 60)] = 60.0
    future_tolerance_minutes: Annotated[NonNegativeFloat, Field(le=24 * 60)] = 5.0
    date_only_time: Annotated[str, AfterValidator(_time_of_day)] = "00:00:00"
    ambiguous: Literal["earliest", "latest"] = "earliest"  # which of the two instants a repeated local time means
    nonexistent: Literal["shift_forward", "shift_backward"] = "shift_forward"  # a local time skipped by DST

    @model_validator(mode="after")
    def _window_left(self) -> WindowConfig:
        if self.safety_margin_minutes >= self.max_age_hours * 60:
            raise KeyedError("safety_margin_minutes", f"must be less than max_age_hours ({self.max_age_hours:g} h): "
                             "no event could be sent")
        return self


@dataclass(frozen=True, config=_TABLE)
class IdentityMapConfig:
    """`identity_map = {…}`: a file joining a source's customer key to a GA client id."""

    path: FilePath
    key: NonEmpty
    client_id: NonEmpty
    source_key: NonEmpty | None = None  # the source's column to join on; default: same name as `key`


def _timestamp_type(value: str | None, info: ValidationInfo) -> str | None:
    """In a user's file: one of the types BigQuery can cast a text time to (code may build others, and
    the extract then names the column, as its tests check)."""
    if value is not None and _from_file(info) and value.upper() not in ("TIMESTAMP", "DATETIME", "DATE"):
        raise ValueError(f"expected 'TIMESTAMP', 'DATETIME' or 'DATE', got {value!r}")
    return value


@dataclass(frozen=True, config=_TABLE)
class SourceOptions:
    """`options = {…}`: what only some kinds understand. Reads like a dict (`options.get("refunds")`)."""

    currency: Annotated[str | None, Field(pattern=r"^[A-Za-z]{3}$")] = None  # every kind: the amounts' currency
    won_stages: StringList | None = None  # salesforce, hubspot
    refunds: StrictBool | None = None  # shopify
    purchase_statuses: StringList | None = None  # shopify
    items_path: Annotated[str | None, AfterValidator(lambda v: _no_credentials(v, "the store's own credentials are used"))] = None  # square
    # bigquery: what a STRING time column's text holds (pushed into the WHERE), a cost cap, and the
    # Storage Read API switch / a local read API ("host:port", tests)
    timestamp_type: Annotated[str | None, AfterValidator(_timestamp_type)] = None
    maximum_bytes_billed: Annotated[StrictInt | None, Field(gt=0)] = None
    storage_api: StrictBool | None = None
    read_api_endpoint: str | None = None
    # Money (docs/commerce.md): a CSV/CRM amount that includes tax, with its `tax` column (params.tax) or
    # a rate; and what a generic `items` column's `price`/`discount` mean.
    value_includes_tax: StrictBool | None = None
    tax_rate: Annotated[float | None, Field(ge=0, lt=10, allow_inf_nan=False)] = None
    item_price: Literal["before_discount", "after_discount"] | None = None
    item_discount: Literal["per_unit", "per_line"] | None = None

    # Which kinds read which option: anything else would be silently ignored, so it is an error.
    KINDS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "won_stages": ("salesforce", "hubspot"),
        "refunds": ("shopify",),
        "purchase_statuses": ("shopify",),
        "items_path": ("square",),
        "timestamp_type": ("bigquery",),
        "maximum_bytes_billed": ("bigquery",),
        "storage_api": ("bigquery",),
        "read_api_endpoint": ("bigquery",),
        "value_includes_tax": ("csv", "parquet", "bigquery", "salesforce", "hubspot"),
        "tax_rate": ("csv", "parquet", "bigquery", "salesforce", "hubspot"),
        "item_price": ("csv", "parquet", "bigquery"),
        "item_discount": ("csv", "parquet", "bigquery"),
    }

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and getattr(self, key, None) is not None

    def __bool__(self) -> bool:
        return any(getattr(self, k) is not None for k in self.__pydantic_fields__)

    def set_keys(self) -> list[str]:
        return [k for k in self.__pydantic_fields__ if getattr(self, k) is not None]


def _place_text(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("expected a column name, got an empty string (leave the key out)")
    return value


Column = Annotated[str | None, AfterValidator(_place_text)]


@dataclass(frozen=True, config=_TABLE)
class PlaceConfig:
    """One `[locations.<store>]` entry: where a store is, as MP's `user_location` takes it.

    Codes are checked with pycountry (ISO 3166-1/-2) and Babel (UN M49) when the file loads
    (etl/protocol/place.py); `country_id` is filled from `region_id` when only the region is given. A
    place, never a person: a city name holds no digits, so no street address or postcode can be one.
    """

    city: str | None = None
    region_id: str | None = None
    country_id: str | None = None
    subcontinent_id: Annotated[str | None, BeforeValidator(_as_text)] = None
    continent_id: Annotated[str | None, BeforeValidator(_as_text)] = None

    @model_validator(mode="after")
    def _codes(self) -> PlaceConfig:
        from etl.protocol.place import completed_location, location_problems

        given = {k: getattr(self, k) for k in ("city", "region_id", "country_id", "subcontinent_id", "continent_id")
                 if getattr(self, k) is not None}
        for key, problem in location_problems(given).items():
            raise KeyedError(key, problem)
        if "country_id" not in given and "region_id" not in given:
            raise KeyedError("country_id", "is required (or region_id, whose country it is): Google recommends "
                             "country_id and region_id at a minimum")
        object.__setattr__(self, "country_id", completed_location(given)["country_id"])
        return self

    def user_location(self) -> dict[str, str]:
        """The MP `user_location` object, fields in the reference's order."""
        from etl.protocol.place import completed_location

        return completed_location({k: v for k, v in vars(self).items() if isinstance(v, str)})


@dataclass(frozen=True, config=_TABLE)
class SourceLocation:
    """`[sources.location]`: where each row's sale happened, sent as `user_location`.

    Either `store` (a column holding a store's name or id, looked up in `[locations]`; Shopify's and
    Square's `Location` column by default), or `fixed_store` (every row is from that store), or the
    columns holding the fields themselves (`city`, `region_id`, `country_id`, `subcontinent_id`,
    `continent_id`: checked per row, a bad code rejects its row naming row and column). A blank cell
    sends the event without `user_location` (an online order: GA derives geo from the site's own tag).
    """

    store: Column = None
    fixed_store: Annotated[str | None, Field(min_length=1)] = None
    unknown_store: Literal["reject", "omit"] = "reject"  # a store name not in [locations]: reject the row, or send without
    city: Column = None
    region_id: Column = None
    country_id: Column = None
    subcontinent_id: Column = None
    continent_id: Column = None

    COLUMNS: typing.ClassVar[tuple[str, ...]] = ("city", "region_id", "country_id", "subcontinent_id", "continent_id")

    @model_validator(mode="after")
    def _one_way(self) -> SourceLocation:
        direct = [k for k in self.COLUMNS if getattr(self, k) is not None]
        if self.store is not None and self.fixed_store is not None:
            raise KeyedError("fixed_store", "either store (a column looked up in [locations]) or fixed_store (one "
                             "store for every row), not both")
        if direct and (self.store is not None or self.fixed_store is not None):
            raise KeyedError(direct[0], "either a store looked up in [locations] or columns holding the codes, not both")
        return self

    def columns(self) -> dict[str, str]:
        """The fields read from columns directly: field → the source's header."""
        return {k: getattr(self, k) for k in self.COLUMNS if getattr(self, k) is not None}


def _device_value(value: str | None, info: ValidationInfo) -> str | None:
    from etl.protocol.place import device_problem

    if value is not None and (problem := device_problem(info.field_name or "", value)):
        raise ValueError(problem)
    return value


DeviceText = Annotated[str | None, AfterValidator(_device_value)]


@dataclass(frozen=True, config=_TABLE)
class DeviceConfig:
    """`[sources.device]`: the device every row of the source was sold on (a kiosk, a POS till, an app),
    sent as MP's `device`. Field names and formats are Google's (MP reference, "Device information")."""

    category: DeviceText = None  # desktop | tablet | mobile | smart TV
    language: DeviceText = None  # ISO 639-1, e.g. en or en-GB
    screen_resolution: DeviceText = None  # WIDTHxHEIGHT
    operating_system: DeviceText = None
    operating_system_version: DeviceText = None
    model: DeviceText = None
    brand: DeviceText = None
    browser: DeviceText = None
    browser_version: DeviceText = None

    def device(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if isinstance(v, str)}

    @model_validator(mode="after")
    def _not_empty(self) -> DeviceConfig:
        if not self.device():
            raise KeyedError("category", "[sources.device] sets no field: Google recommends category at a minimum")
        return self


def _event_name(value: str, info: ValidationInfo) -> str:
    if not _from_file(info):
        return value  # built in code: the transform rejects the rows (and its tests rely on that)
    if len(value) > 40:
        raise ValueError(f"event name {value!r} is longer than 40 characters")
    if not _NAME.match(value):
        raise ValueError(f"event name {value!r} must start with a letter and hold only letters, digits and underscores")
    if value.startswith(_RESERVED_PREFIXES) or value in _RESERVED_EVENTS:
        raise ValueError(f"event name {value!r} is reserved by Google Analytics")
    return value


_RESERVED_EVENTS = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure", "app_background",
    "app_clear_data", "app_exception", "app_remove", "app_store_refund", "app_store_subscription_cancel",
    "app_store_subscription_convert", "app_store_subscription_renew", "app_update", "app_upgrade",
    "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open", "error", "first_open",
    "first_visit", "in_app_purchase", "notification_dismiss", "notification_foreground", "notification_open",
    "notification_receive", "os_update", "session_start", "session_start_with_rollout", "user_engagement",
})


def _name(value: str) -> str:
    if not value.strip() or "|" in value:
        raise ValueError(f"expected a non-empty name without '|', got {value!r}")
    return value


def _filter(value: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for column, allowed in value.items():
        if not column.strip():
            raise ValueError("a filter needs a column name")
        if not allowed:
            raise ValueError(f"filter {column!r} allows no value: every row would be rejected")
        out[column] = tuple(allowed)
    return out


@dataclass(frozen=True, config=_TABLE, kw_only=True)
class SourceConfig:
    """One `[[sources]]` entry: a file, its kind, its zone and how its columns map to MP fields."""

    name: Annotated[str, AfterValidator(_name)]
    kind: Literal["csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery"] = "csv"
    # A local file or a URL (gs://, s3://…); for kind "bigquery", a label set from table/query.
    path: FilePath | None = None
    event: Annotated[str, AfterValidator(_event_name)] = "purchase"
    timezone: Zone = "UTC"
    columns: dict[str, str] = field(default_factory=dict)  # MP field -> source column
    params: dict[str, str] = field(default_factory=dict)  # declared extra params: name -> column
    encoding: Encoding = None
    delimiter: OneChar = None
    decimal: Literal[".", ","] = "."
    thousands: OneChar = None
    identity_map: IdentityMapConfig | None = None
    consent_default: Literal["deny", "grant", "omit"] = "deny"
    on_pii: Literal["reject", "drop"] = "reject"  # or "drop": drop the offending field instead of the row
    send_user_id: StrictBool = False
    # Send engagement_time_msec (1) on every event: only for a source that really measured engagement.
    # Google counts a user as active when the param arrives; an offline conversion is not engagement.
    engagement_time: StrictBool = False
    options: SourceOptions = field(default_factory=SourceOptions)  # kind-specific (stage names, refunds…)
    # A CSV cell larger than this (bytes as written) rejects its row with a reason naming row and column;
    # the file's other rows go on. Memory stays bounded by it (docs/configuration.md, `max_field_bytes`).
    max_field_bytes: Annotated[StrictInt, Field(ge=1024, le=64 << 20)] = 1 << 20
    # `[sources.filter]`: source column -> allowed values (case-insensitive, trimmed); other rows: FILTERED.
    filter: Annotated[dict[str, StringList], AfterValidator(_filter)] = field(default_factory=dict)
    # kind = "bigquery": exactly one of table ("project.dataset.table") or query (standard SQL)
    table: NonEmpty | None = None
    query: NonEmpty | None = None
    project: NonEmpty | None = None  # billing project; default: the credentials' project
    # kind = "bigquery": the job's location ("EU"); any kind: a `[sources.location]` table (store locations)
    location: Annotated[
        Annotated[NonEmpty, Tag("tagged-job")] | Annotated[SourceLocation, Tag("tagged-place")],
        Discriminator(lambda v: "tagged-job" if isinstance(v, str) else "tagged-place"),
    ] | None = None
    api_endpoint: Annotated[str | None, AfterValidator(lambda v: _endpoint(v))] = None  # a local BigQuery API (tests)
    device: DeviceConfig | None = None  # `[sources.device]`: fixed device fields for every row (kiosk, POS, app)

    @property
    def job_location(self) -> str | None:
        """The BigQuery job location (`location = "EU"`), never the store-location table."""
        return self.location if isinstance(self.location, str) else None

    @property
    def place(self) -> SourceLocation | None:
        """The `[sources.location]` table, when the source sends store locations."""
        return self.location if isinstance(self.location, SourceLocation) else None

    @model_validator(mode="after")
    def _consistent(self) -> SourceConfig:
        if self.kind == "bigquery":
            if (self.table is None) == (self.query is None):
                raise KeyedError("table", "kind 'bigquery' needs exactly one of table (\"project.dataset.table\") or query")
            object.__setattr__(self, "path", f"bigquery:{self.table}" if self.table else "bigquery:query")
        else:
            if self.path is None:
                raise KeyedError("path", "is required (the export file, or a gs:// / s3:// URL)")
            for key in ("table", "query", "project", "location", "api_endpoint"):
                if getattr(self, key) is not None and not (key == "location" and self.place is not None):
                    hint = " (a store location is a [sources.location] table)" if key == "location" else ""
                    raise KeyedError(key, f"is read only by kind 'bigquery', not {self.kind!r}{hint}")
        if self.thousands is not None and self.thousands == self.decimal:
            raise KeyedError("thousands", f"thousands and decimal are both {self.decimal!r}")
        for key in self.options.set_keys():
            kinds = SourceOptions.KINDS.get(key)
            if kinds and self.kind not in kinds:
                raise KeyedError(f"options.{key}", f"is read only by kind {' or '.join(kinds)}, not {self.kind!r}")
        if self.options.get("value_includes_tax") and self.options.get("tax_rate") is None and "tax" not in self.params:
            raise KeyedError("options.value_includes_tax", "needs the tax: a `tax` column (params.tax) or options.tax_rate")
        if self.options.get("tax_rate") is not None and not self.options.get("value_includes_tax"):
            raise KeyedError("options.tax_rate", "is read only with options.value_includes_tax = true")
        return self


@dataclass(frozen=True, config=_TABLE)
class ReconcileConfig:
    """`[reconcile]`: where the GA4 export is read from and how strict the verdict is."""

    backend: Literal["duckdb", "bigquery"] = "duckdb"
    store: ConfigPath | None = None  # duckdb: the collector's data dir or a folder of exported files
    project: NonEmpty | None = None
    dataset: NonEmpty | None = None
    location: NonEmpty | None = None
    api_endpoint: Annotated[str | None, AfterValidator(_endpoint)] = None  # a local BigQuery API (tests); None: Google's
    tolerance: Annotated[float, Field(ge=0, le=1), BeforeValidator(_no_bool)] = 0.0  # share allowed missing on final dates
    provisional_hours: Annotated[NonNegativeFloat, Field(le=30 * 24)] = 72.0
    maximum_bytes_billed: Annotated[StrictInt, Field(gt=0, le=10**15)] = 10 * 1024**3
    arrival_grace_minutes: Annotated[NonNegativeFloat, Field(le=7 * 24 * 60)] = 120.0  # after sending, an event absent this long counts as missing
    daily_export_cap: Annotated[StrictInt, Field(ge=0, le=10**12)] = 1_000_000  # a daily table this full is capped; 0: no cap (360)
    # Per currency and date, the amount allowed missing (or held twice) before the verdict fails; None: counts only.
    tolerance_value: Annotated[float | None, Field(ge=0, le=1e15, allow_inf_nan=False), BeforeValidator(_no_bool)] = None
    # Events the BigQuery link excludes from the export, used when the GA4 Admin API cannot be asked.
    excluded_events: tuple[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")], ...] = ()
    admin_api_endpoint: Annotated[str | None, AfterValidator(_endpoint)] = None  # a local GA4 Admin API (tests)

    @model_validator(mode="after")
    def _bigquery(self) -> ReconcileConfig:
        if self.backend == "bigquery" and not (self.project and self.dataset):
            raise KeyedError("project", "backend 'bigquery' needs project and dataset (analytics_<property_id>)")
        return self


@dataclass(frozen=True, config=_TABLE)
class HistoricalConfig:
    """`[historical]`: where deferred events go at their true date (docs/deferred.md).

    bigquery: `table` is "dataset.table" or "project.dataset.table", partitioned by `event_day`.
    duckdb: files `<path>/<table>_YYYYMMDD.<run_id>.ndjson` (default path: state/historical).
    """

    table: str | None = None  # absent: the table is off, nothing changes
    backend: Literal["duckdb", "bigquery"] = "duckdb"
    project: NonEmpty | None = None
    location: NonEmpty | None = None
    api_endpoint: Annotated[str | None, AfterValidator(_endpoint)] = None  # a local BigQuery API (tests)
    path: ConfigPath | None = Path("state/historical")
    timeout_s: Annotated[PositiveFloat, Field(le=DAY)] = 120.0  # bigquery: each API call, retries included; then the run reports the error

    @model_validator(mode="after")
    def _shape(self) -> HistoricalConfig:
        if not self.table:
            return self
        parts = self.table.split(".")
        shape = "dataset.table or project.dataset.table" if self.backend == "bigquery" else "a plain name such as 'historical'"
        if (self.backend == "duckdb" and len(parts) != 1) or (self.backend == "bigquery" and len(parts) not in (2, 3)) \
                or not all(_TABLE_PART.match(p) for p in parts[-2:]):
            raise KeyedError("table", f"expected {shape}")
        if parts[-1].lower().startswith("events"):
            # `events_*` (BigQuery wildcard, the collector's store) would read it as GA4's own export.
            raise KeyedError("table", "must not start with 'events' (it would match events_*)")
        if self.backend == "bigquery" and len(parts) == 2 and not self.project:
            raise KeyedError("project", "backend 'bigquery' needs project, or table as project.dataset.table")
        if self.backend == "bigquery":
            object.__setattr__(self, "path", None)
        return self


_TABLE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, config=_TABLE)
class PrivacyConfig:
    """`[privacy]`: params beyond the built-in allowlist, per event (still scanned for personal data)."""

    extra_params: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, config=_TABLE)
class ConfigFile:
    """The TOML file as written: what `mpetl schema` describes."""

    property: PropertyConfig
    sources: Annotated[list[SourceConfig], Field(min_length=1), AfterValidator(lambda s: _unique_names(s))]
    base_dir: str = "."
    destination: DestinationConfig = field(default_factory=DestinationConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    historical: HistoricalConfig | None = None  # absent: deferred events go to deferred.csv only
    # `[locations.<store>]`: where each store is (docs/locations.md); sources look stores up here.
    locations: dict[Annotated[str, Field(min_length=1)], PlaceConfig] = field(default_factory=dict)

    @model_validator(mode="after")
    def _stores_known(self) -> ConfigFile:
        for i, source in enumerate(self.sources):
            place = source.place
            if place is None:
                continue
            if place.fixed_store is not None and place.fixed_store not in self.locations:
                raise KeyedError(f"sources.{i}.location.fixed_store",
                                 f"is not a store of [locations] (known: {', '.join(sorted(self.locations)) or 'none'})")
            if not place.columns() and not self.locations:
                raise KeyedError(f"sources.{i}.location", "looks stores up in [locations], but the config has no "
                                 "[locations] table (add [locations.<store>] with city, region_id, country_id)")
        return self

    @model_validator(mode="after")
    def _data_manager_needs_property_id(self) -> ConfigFile:
        if self.destination.api == API_DATA_MANAGER and not self.property.property_id:
            raise KeyedError("property.property_id", "is required with [destination] api = \"data_manager\" "
                             "(the GA4 property the events go to: operatingAccount GOOGLE_ANALYTICS_PROPERTY)")
        return self


def _unique_names(sources: list[SourceConfig]) -> list[SourceConfig]:
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            raise ValueError(f"two sources are named {s.name!r}: names must be unique")
        seen.add(s.name)
    return sources


# --- the runtime view ----------------------------------------------------------------------------

from dataclasses import dataclass as _plain_dataclass  # noqa: E402  (the runtime view is a plain dataclass)


@_plain_dataclass(frozen=True)
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
    ledger: LedgerConfig | None = None  # the whole [ledger] table (ledger_path is its path)
    historical: HistoricalConfig | None = None  # None: deferred events go to deferred.csv only
    ledger_url: str | None = None  # [ledger] url: a shared PostgreSQL ledger (wins over path)
    locations: dict[str, PlaceConfig] = field(default_factory=dict)  # [locations]: store → where it is

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
    query = {key.lower() for key in parse_qs(parts.query, keep_blank_values=True)}
    return parts.password is not None or bool(query & {"password", "sslpassword"})


def read_api_secret(dest: DestinationConfig) -> str | None:
    """The API secret from the environment, else from the configured file; None when neither."""
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return secret.strip()
    path = dest.api_secret_file
    if path is not None and path.is_file():
        _warn_if_readable_by_others(path)
        try:
            return path.read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            raise ConfigError(str(path), "destination.api_secret_file", "cannot read the API secret file") from None
    return None


def _warn_if_readable_by_others(path: Path) -> None:
    """One warning line (not an error: the run goes on) when the secret file's group or others may read it
    (0640, 0644): anyone who can read it can send events into the property."""
    from etl import log

    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warn("api_secret_file_readable", path=str(path), mode=f"{mode:04o}",
                 hint=f"readable by {'others' if mode & 0o007 else 'its group'}: chmod 600 {path}")


_FILE_ADAPTER = TypeAdapter(ConfigFile)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the TOML file (for `mpetl schema` and editors)."""
    schema = _FILE_ADAPTER.json_schema()
    schema["title"] = "mpetl config"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and check a TOML config; raises ConfigError (one line) naming the file and key."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), "-", "config file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(file), "-", "is a directory, expected a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(str(file), "-", "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(str(file), "-", f"cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), "-", f"is not valid TOML ({exc})") from None
    if "api_secret" in raw or "api_secret" in (raw.get("destination") or {}):
        raise ConfigError(str(file), "destination.api_secret",
                          f"must not be in the config file: set {SECRET_ENV} or destination.api_secret_file")
    base = raw.get("base_dir", ".")
    if not isinstance(base, str):
        raise ConfigError(str(file), "base_dir", "expected a string (a folder, relative to the config file)")
    base_dir = (file.parent / base).resolve()
    try:
        parsed = _FILE_ADAPTER.validate_python(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _config_error(file, raw, exc) from None
    return Config(
        historical=parsed.historical if parsed.historical is not None and parsed.historical.table else None,
        file=file.resolve(),
        base_dir=base_dir,
        property=parsed.property,
        destination=parsed.destination,
        ledger_path=parsed.ledger.path,
        ledger=parsed.ledger,
        ledger_url=parsed.ledger.url,
        window=parsed.window,
        sources=tuple(parsed.sources),
        reconcile=parsed.reconcile,
        privacy_extra_params={event: tuple(names) for event, names in parsed.privacy.extra_params.items()},
        locations=dict(parsed.locations),
    )


# --- one-line errors -----------------------------------------------------------------------------

_UNKNOWN = {"unexpected_keyword_argument", "extra_forbidden"}
_MISSING = {"missing", "missing_argument", "missing_keyword_only_argument"}


def _config_error(file: Path, raw: dict[str, Any], exc: ValidationError) -> ConfigError:
    """Every problem, one line each: file, key (sources named by name), what was expected; an unknown key in
    any table says which known key it is closest to (did you mean …?) and lists the table's keys."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        problem = _problem(raw, error)
        if problem not in problems:
            problems.append(problem)
    # A required key "missing" because it was misspelt: the did-you-mean line of the typo says it all.
    meant = {f"{key.rpartition('.')[0]}.{m.group(1)}" for key, expected in problems
             if (m := re.match(r"unknown key; did you mean '([^']+)'\?", expected))}
    problems = [(key, expected) for key, expected in problems if not (expected == "is required" and key in meant)]
    return ConfigProblems(str(file), problems)


def _problem(raw: dict[str, Any], error: Any) -> tuple[str, str]:
    loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[", "tagged-")))]
    blamed = (error.get("ctx") or {}).get("error")
    if isinstance(blamed, KeyedError):
        loc = [*loc, *(int(p) if p.isdigit() else p for p in blamed.key.split("."))]
    key = _key_name(raw, loc)
    kind = error["type"]
    if kind in _UNKNOWN:
        where = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), sorted(where), n=1, cutoff=0.6) if where else []
        expected = "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
        if where:
            expected += f" (known: {', '.join(sorted(where))})"
    elif kind in _MISSING:
        expected = "is required"
    else:
        expected = _message(error)
    return key, expected


_PATTERNS = {
    "measurement_id": "expected a web stream id like 'G-K7QW2ZP9LM' (G- then capital letters and digits)",
    "property_id": "expected the property's number (digits only: the export dataset is analytics_<property_id>)",
    "currency": "expected a 3-letter ISO 4217 code such as 'EUR'",
}


def _message(error: Any) -> str:
    """Pydantic's message in the config's words; a value is echoed only when it is a number (never text)."""
    kind = error["type"]
    if kind == "string_pattern_mismatch" and error["loc"] and error["loc"][-1] in _PATTERNS:
        return _PATTERNS[error["loc"][-1]]
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    msg = msg.replace("Input should be", "expected").replace("Input is", "expected")
    value = error.get("input")
    if isinstance(value, int | float) and not isinstance(value, bool):
        msg += f", got {value}"
    elif kind == "literal_error" and isinstance(value, str):
        msg += f", got {value!r}"
    elif kind.endswith("_type") and value is not None:
        msg += f", got {_toml_type(value)}"
    return msg[0].lower() + msg[1:] if msg[:1].isupper() and not msg[1:2].isupper() else msg


def _toml_type(value: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "a table", list: "a list"}
    return next((n for t, n in names.items() if type(value) is t), type(value).__name__)


def _key_name(raw: dict[str, Any], loc: list[Any]) -> str:
    """('sources', 0, 'timezon') → 'sources.crm.timezon' (the name the user wrote), else the index."""
    parts: list[str] = []
    node: Any = raw
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] == "sources":
            name = node[part].get("name") if isinstance(node, list) and part < len(node) and isinstance(node[part], dict) else None
            parts.append(str(name) if isinstance(name, str) else f"[{part}]")
        else:
            parts.append(str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts).replace(".[", "[") if parts else "-"


def _fields_at(loc: list[Any]) -> set[str] | None:
    """The field names of the table at `loc` (for did-you-mean), walking the model's annotations."""
    cls: Any = ConfigFile
    for part in loc:
        cls = _unwrap(cls)
        if isinstance(part, int):
            args = typing.get_args(cls)
            cls = args[0] if args else None
            continue
        fields = getattr(cls, "__pydantic_fields__", None)
        if not fields or part not in fields:
            return None
        cls = fields[part].annotation
    cls = _unwrap(cls)
    fields = getattr(cls, "__pydantic_fields__", None)
    return set(fields) if fields else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp
