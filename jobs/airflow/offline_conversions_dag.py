"""Airflow DAG: send each day's offline conversions to GA4, then reconcile against the export.

Why this shape:
- One task group per configured source (`validate` = a dry run of that source for the data interval,
  then `send`), so a bad file is seen, and retried, per source. The groups run one after another
  (chained, and `max_active_tasks=1`): every source writes to the same ledger, which admits one run
  at a time.
- Every task calls mpetl's Python API for the run's data interval (a day in the property's reporting
  zone). The ledger makes each task idempotent: a retry or a cleared task sends only what was not
  sent yet, never an event twice.
- `wait_for_export` gives the GA4 export time to land (0 for the local endpoint), then `reconcile`
  fails the run when the dates that became final do not reconcile (exit 3).
- The API secret lives in an Airflow connection or Variable named `mpetl_api_secret`. It is put in
  the environment (MP_API_SECRET) only while a `send` task runs, registered with Airflow's secret
  masker, and never written to this file, a log line, XCom or an error message.

Settings (Airflow Variable, else environment variable, else default):
- `mpetl_config` / MPETL_CONFIG: the config file (default: jobs/configs/samples.toml of this checkout).
  Read when the DAG is parsed (to lay out one group per source) and again in each task. A config that
  does not load never breaks the parse: the DAG then holds only `check_config`, which fails with the
  config's one-line error (and a good config shows the groups at the next parse).
- `mpetl_out_dir` / MPETL_OUT: output root; each task try writes its own folder,
  `<root>/airflow/<last day>/<source>/{validate,send}/try-<n>` and `<root>/airflow/<last day>/reconcile/try-<n>`,
  so a retry never overwrites the outputs of the try that failed (default: `out` under the config's base_dir).
- `mpetl_owner` / MPETL_OWNER: the tasks' owner shown in the UI (default: `data-engineering`).
- `mpetl_on_failure` / MPETL_ON_FAILURE: `package.module:function` called with the task's context when a
  task fails (after retries), e.g. to page or post to chat; every failure also logs one line
  `mpetl task <id> failed (try n): <reason>`.
- `mpetl_shards` / MPETL_SHARDS (default 1): with N > 1, each source's send is mapped over N shards
  (dynamic task mapping, `send.expand(shard=["1/N", …])`): the mapped tasks run at once, on any
  worker (Celery, Kubernetes), sharing nothing but the PostgreSQL ledger (`[ledger] url`, required);
  each writes `<source>/send/shard-K-of-N/try-<n>`; `aggregate` then checks the shards' summaries add up to the night; reconcile runs once, after all.
  Read when the DAG is parsed.
- `mpetl_export_wait_minutes` / MPETL_EXPORT_WAIT_MINUTES: how long after the data interval ends to
  wait before reconciling (default 0 for `endpoint = "local"`, 240 otherwise).
- `mpetl_retries` / MPETL_RETRIES (default 2) and `mpetl_retry_delay_minutes` / MPETL_RETRY_DELAY_MINUTES
  (default 10): a send with failures left (exit 4) or a held ledger (exit 5) is retried; bad input or
  config (exit 2) fails at once, since a retry cannot fix it.
- `mpetl_api_secret` (connection password, or Variable): the Measurement Protocol API secret. If
  neither exists, the worker's own MP_API_SECRET or the config's api_secret_file is used.

Run parameters (trigger with config): `now` pins the clock (ISO-8601; the 72 h window is measured
from it; default: the wall clock), `days` sends the last N days of the interval instead of 1 (late rows).

`catchup=False`: a new deployment starts from the latest interval. To backfill (GA4 only takes events
up to 72 h old; older rows go to deferred.csv for Data Import):
    airflow backfill create --dag-id mpetl_offline_conversions --from-date 2026-11-18 --to-date 2026-11-20
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import CronDataIntervalTimetable, Param, TaskGroup, Variable, chain, dag, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from etl.accounting import Buckets, sent_label
from etl.commandline import known_failure
from etl.config import SECRET_ENV, Config, load_config
from etl.errors import EXIT_BAD_INPUT, EXIT_OK, MpetlError
from etl.next_steps import not_delivered_message

DAG_ID = "mpetl_offline_conversions"
SECRET_ID = "mpetl_api_secret"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "samples.toml"
# What each task returns (its XCom): every bucket of etl.accounting.Buckets (filtered apart from rejected; a
# validate task's would_send), the equation, why rows were filtered, and the send's last error.
SUMMARY_COUNTS = ("run_id", "shard", "mode", "rows_in", *Buckets.NAMES, "equation", "filtered_codes", "exit_code")


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    label = sent_label(summary.get("mode", "send"))
    counts = {(label if k == "sent" else k): summary.get(label if k == "sent" else k) for k in SUMMARY_COUNTS}
    return counts | {"last_error": (summary.get("send") or {}).get("last_error")}


def _setting(variable: str, env: str, default: str | None = None) -> str | None:
    """An Airflow Variable, else an environment variable, else the default."""
    try:
        value = Variable.get(variable, default=None)
    except Exception:  # no metadata DB / API reachable (e.g. parsing outside Airflow): use the environment
        value = None
    return value or os.environ.get(env) or default


def _config() -> Config:
    return load_config(_setting("mpetl_config", "MPETL_CONFIG", str(DEFAULT_CONFIG)))


def _out_root(config: Config) -> Path:
    return Path(_setting("mpetl_out_dir", "MPETL_OUT", str(config.base_dir / "out"))) / "airflow"


def _parse_moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AirflowFailException("run parameter now: expected ISO-8601 such as 2026-11-21T06:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Window:
    """The run's event-time window [since, until) and the dates to reconcile, in the reporting zone."""

    def __init__(self, config: Config, interval_start: datetime | None, interval_end: datetime | None,
                 params: dict[str, Any]) -> None:
        if interval_start is None or interval_end is None:
            raise AirflowFailException("this DAG needs a data interval: trigger it with a logical date")
        zone = ZoneInfo(config.property.timezone)
        self.now = _parse_moment(params.get("now"))
        self.last_day: date = (interval_end.astimezone(zone) - timedelta(microseconds=1)).date()
        first_day = interval_start.astimezone(zone).date() - timedelta(days=int(params.get("days") or 1) - 1)
        self.since = datetime.combine(first_day, time(), zone).astimezone(UTC)
        self.until = interval_end.astimezone(UTC)
        clock = self.now or datetime.now(UTC)
        settled = (clock - timedelta(hours=config.reconcile.provisional_hours)).astimezone(zone).date()
        self.reconcile_since = min(settled - timedelta(days=1), self.last_day)

    def out_dir(self, config: Config, *parts: str, try_number: int | None = None) -> Path:
        """This try's own folder: a retry must not overwrite the outputs that explain the failed try."""
        return _out_root(config).joinpath(self.last_day.isoformat(), *parts, f"try-{try_number or 1}")


def _lookup_secret() -> str | None:
    """The API secret from the connection `mpetl_api_secret` (password), else the Variable of that name."""
    from airflow.sdk import BaseHook

    try:
        password = BaseHook.get_connection(SECRET_ID).password
        if password:
            return password
    except AirflowNotFoundException:
        pass
    return Variable.get(SECRET_ID, default=None)


@contextlib.contextmanager
def _api_secret_in_env() -> Iterator[None]:
    """MP_API_SECRET set for the duration of one task only, masked in every log line."""
    from airflow.sdk.log import mask_secret

    secret = _lookup_secret()
    if not secret:
        yield  # the worker's own MP_API_SECRET or the config's api_secret_file applies
        return
    mask_secret(secret)
    previous = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = secret
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = previous


def _failure(step: str, code: int, detail: str) -> AirflowException:
    """One line, no secret. Bad input or config (2) will not fix itself: fail without retrying."""
    message = f"mpetl {step} exited {code}: {detail}"
    return AirflowFailException(message) if code == EXIT_BAD_INPUT else AirflowException(message)


@contextlib.contextmanager
def _one_line_errors(step: str) -> Iterator[None]:
    """Turn an mpetl error into a one-line task failure; an unexpected error into its type and place only.

    A library's own message can quote data (pandas prints the offending keys), so, like the CLI, the
    task never lets such a message or traceback reach the log: the type and the innermost line of the
    code suffice to find the bug, and they hold no row values.
    """
    try:
        yield
    except (AirflowException, AirflowFailException):
        raise
    except Exception as exc:
        known = known_failure(exc)  # the CLI's own mapping (etl/commandline.py): the same words as `mpetl`
        if known is not None:
            raise _failure(step, known.exit_code, str(known)) from None
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise AirflowException(
            f"mpetl {step} failed: internal error {type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
        ) from None


def _run_source(source: str, mode: str, data_interval_start: datetime | None, data_interval_end: datetime | None,
                params: dict[str, Any], try_number: int | None = None, shard: str | None = None) -> dict[str, Any]:
    from etl.load import is_postgres_url
    from etl.pipeline import RunOptions, run_pipeline
    from etl.shard import Shard

    step = f"{'dry-run' if mode == 'dry-run' else 'send'} of source {source}" + (f", shard {shard}" if shard else "")
    with _one_line_errors(step):
        config = _config()
        if source not in {s.name for s in config.sources}:
            raise AirflowFailException(f"source {source} is no longer in {config.file}; re-parse the DAG")
        spec = Shard.parse(shard) if shard else None
        if spec is not None and not is_postgres_url(config.ledger_location):
            raise AirflowFailException(f"mpetl_shards > 1 needs a ledger all workers share: set [ledger] url "
                                       f"(PostgreSQL) in {config.file}")
        window = Window(config, data_interval_start, data_interval_end, params)
        parts = (source, "validate" if mode == "dry-run" else "send") + ((f"shard-{spec.index}-of-{spec.count}",) if spec else ())
        out = window.out_dir(config, *parts, try_number=try_number)
        options = RunOptions(out_dir=out, mode=mode, now=window.now, since=window.since, until=window.until,
                             only_sources=(source,), shard=(spec.index, spec.count) if spec else None)
        print(f"{step}: events from {window.since.isoformat()} to {window.until.isoformat()} (now: "
              f"{window.now.isoformat() if window.now else 'wall clock'}), outputs in {out}")
        with _api_secret_in_env() if mode == "send" else contextlib.nullcontext():
            result = run_pipeline(config, options)
    counts = _counts(result.summary)
    if result.exit_code != EXIT_OK:
        # The run's own words, as `mpetl run` prints them on stderr: the events not delivered and the send's last
        # error (class and count), or the failed sources.
        errors = "; ".join(e["error"] for e in result.summary["source_errors"])
        detail = "; ".join(p for p in (not_delivered_message(result.summary), errors) if p) or "see summary.json"
        raise _failure(step, result.exit_code, f"{detail}; see {out}/summary.json")
    return counts


def _try_number(ti: Any) -> int | None:
    return getattr(ti, "try_number", None)


@task
def check_config() -> dict[str, Any]:
    """Load the config: a broken one fails here, in one line, instead of breaking the DAG's parse."""
    with _one_line_errors("config check"):
        config = _config()
    return {"config": str(config.file), "sources": [s.name for s in config.sources]}


@task
def validate(source: str, data_interval_start=None, data_interval_end=None, params=None, ti=None) -> dict[str, Any]:
    """Dry run for the interval: the source reads, and every request is built and checked; nothing is sent."""
    return _run_source(source, "dry-run", data_interval_start, data_interval_end, params or {}, _try_number(ti))


@task
def send(source: str, shard: str | None = None, data_interval_start=None, data_interval_end=None, params=None,
         ti=None) -> dict[str, Any]:
    """Send the source's events of the interval (of one shard's clients when mapped over shards); the
    ledger skips what an earlier try already sent.

    A task function of its own (not folded into validate) so it can be mapped (`.expand`) over shards.
    """
    return _run_source(source, "send", data_interval_start, data_interval_end, params or {}, _try_number(ti), shard)


@task
def aggregate(shard_counts: list[dict[str, Any]]) -> dict[str, Any]:
    """The source's night from its shards: every shard there once, each balanced, every row owned once."""
    from etl.shard import AggregateError
    from etl.shard import aggregate as fold

    try:
        # By index, up to its length: iterating the lazy XCom sequence probes one past the end (an error line).
        night = fold([shard_counts[i] for i in range(len(shard_counts))])
    except AggregateError as exc:
        raise AirflowFailException(f"mpetl shards do not add up: {exc}") from None
    print(f"{night['shards']} shards: {night['equation']}")
    return {k: v for k, v in night.items() if k != "per_shard"}


def _shard_count() -> int:
    """`mpetl_shards` (default 1): how many mapped send tasks per source."""
    text = (_setting("mpetl_shards", "MPETL_SHARDS", "1") or "1").strip()
    return int(text) if text.isdigit() and int(text) >= 1 else 1


@task.sensor(poke_interval=300, timeout=24 * 3600, mode="reschedule")
def wait_for_export(data_interval_end=None) -> bool:
    """Wait until the export has had time to land (wall clock: data interval end + the configured wait)."""
    if data_interval_end is None:
        raise AirflowFailException("this DAG needs a data interval: trigger it with a logical date")
    with _one_line_errors("wait for export"):
        config = _config()
    default = "0" if config.destination.endpoint == "local" else "240"
    minutes = float(_setting("mpetl_export_wait_minutes", "MPETL_EXPORT_WAIT_MINUTES", default) or 0)
    return datetime.now(UTC) >= data_interval_end + timedelta(minutes=minutes)


@task
def reconcile(data_interval_start=None, data_interval_end=None, params=None, ti=None) -> dict[str, Any]:
    """Compare the ledger with the export for the dates that became final (and the provisional ones since)."""
    from etl.reconcile import reconcile as do_reconcile

    with _one_line_errors("reconcile"):
        config = _config()
        window = Window(config, data_interval_start, data_interval_end, params or {})
        out = window.out_dir(config, "reconcile", try_number=_try_number(ti))
        print(f"reconcile: event dates {window.reconcile_since} to {window.last_day}, outputs in {out}")
        result = do_reconcile(config, out_dir=out, since=window.reconcile_since, until=window.last_day, now=window.now)
    print(result.summary_text())
    if result.exit_code != EXIT_OK:
        raise _failure("reconcile", result.exit_code, f"{result.headline} See {out}/reconciliation.html")
    return {"verdict": str(result.verdict), "since": window.reconcile_since.isoformat(),
            "until": window.last_day.isoformat(), "exit_code": result.exit_code}


def _group_id(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", source)


def _on_failure(context: dict[str, Any]) -> None:
    """Every failed task: one line in the task log, then the user's hook (`mpetl_on_failure`), if any."""
    import importlib

    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    reason = str(exc).splitlines()[0] if exc else "see the task log"
    print(f"mpetl task {getattr(ti, 'task_id', '?')} failed (try {getattr(ti, 'try_number', '?')}): {reason}")
    hook = _setting("mpetl_on_failure", "MPETL_ON_FAILURE")
    if hook:
        module, _, name = hook.partition(":")
        getattr(importlib.import_module(module), name or "on_failure")(context)


def _parse_time_config() -> tuple[Config | None, str | None]:
    """The config for the DAG's layout; a broken one is reported by `check_config`, never at parse."""
    try:
        return _config(), None
    except MpetlError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - nothing may break the parse
        return None, f"{type(exc).__name__}"


_parsed, _parse_error = _parse_time_config()
_zone = _parsed.property.timezone if _parsed else "UTC"
_shards = _shard_count()


@dag(
    dag_id=DAG_ID,
    description="Offline conversions to GA4 via the Measurement Protocol, reconciled against the export",
    doc_md=(f"**The config does not load:** {_parse_error}\n\n" if _parse_error else "") + (__doc__ or ""),
    # A data interval of one day in the property's reporting zone, like GA4's own dates (Airflow 3's
    # "@daily" is a trigger timetable whose interval is empty, so the interval timetable is explicit).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=_zone),
    start_date=datetime(2026, 1, 1, tzinfo=ZoneInfo(_zone)),
    catchup=False,
    max_active_runs=1,
    # One run at a time per ledger; with shards, a source's mapped sends run at once (PostgreSQL ledger).
    max_active_tasks=max(1, _shards),
    default_args={
        "owner": _setting("mpetl_owner", "MPETL_OWNER", "data-engineering"),
        "on_failure_callback": _on_failure,
        "retries": int(_setting("mpetl_retries", "MPETL_RETRIES", "2") or 0),
        "retry_delay": timedelta(minutes=float(_setting("mpetl_retry_delay_minutes", "MPETL_RETRY_DELAY_MINUTES", "10") or 0)),
    },
    params={
        "now": Param(None, type=["null", "string"], description="Pin the clock (ISO-8601); default: wall clock"),
        "days": Param(1, type="integer", minimum=1, maximum=3, description="Days of the interval to send (late rows)"),
    },
    tags=["mpetl", "ga4"],
)
def mpetl_offline_conversions() -> None:
    checked = check_config()
    if _parsed is None:
        return  # check_config fails with the reason; the groups appear once the config loads
    groups = []
    for source in _parsed.sources:
        with TaskGroup(group_id=_group_id(source.name)) as group:
            validated = validate.override(task_id="validate")(source.name)
            if _shards > 1:
                sends = send.override(task_id="send").partial(source=source.name).expand(
                    shard=[f"{k}/{_shards}" for k in range(1, _shards + 1)])
                validated >> sends >> aggregate.override(task_id="aggregate")(sends)
            else:
                validated >> send.override(task_id="send")(source.name)
        groups.append(group)
    chain(checked, *groups, wait_for_export(), reconcile())


mpetl_offline_conversions()
