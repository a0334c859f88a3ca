"""What to do next after a run, as commands a person can paste: the real config path, run id and folders.

Why commands and not advice: "re-run `mpetl run` for those dates" reads helpful and does nothing (the
ledger counts those rows as duplicates); `mpetl resend --config /etc/mpetl/shop.toml --run-id
20261121T060000Z-c9517c` resends exactly what is missing. Every step here names a command that does
what the sentence says, or a file to open; none is printed when there is nothing to do about it.

Why one module: the run's printed summary, the reconciliation report (HTML, terminal, notebook) and the
Airflow DAG's failure message all explain the same outcomes; `reconcile` adds its own steps
(etl/reconcile/presentation.py) from the same command builder.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from etl.accounting import sent_label


def command(*words: object) -> str:
    """`mpetl …` quoted for a POSIX shell: a path with a space still pastes as one argument."""
    return shlex.join(["mpetl", *(str(w) for w in words)])


def last_error_text(last_error: Mapping[str, Any] | None) -> str | None:
    """`ConnectError × 41 attempts (All connection attempts failed)` from summary.json's `send.last_error`."""
    if not last_error:
        return None
    cause, count, message = last_error.get("error"), last_error.get("count", 0), last_error.get("message") or ""
    detail = message.removeprefix(f"{cause}:").strip() if message != cause else ""
    return f"{cause} × {count:,} attempt{'s' if count != 1 else ''}" + (f" ({detail})" if detail else "")


def not_delivered_message(summary: Mapping[str, Any]) -> str | None:
    """Why a run exits 4, in one line: how many events were not delivered and the send's last error.

    The same text goes to stderr (the CLI), the log (`events_not_delivered`) and Airflow's failure.
    """
    earlier = summary.get("earlier_runs") or {}
    failed = int(summary.get("failed", 0)) + int(earlier.get("failed", 0))
    expired = int(summary.get("expired", 0)) + int(earlier.get("expired", 0))
    if not failed and not expired:
        return None
    parts = []
    if failed:
        checked = "validated by the debug endpoint" if summary.get("mode") == "validate" else "delivered"
        parts.append(f"{failed:,} events not {checked} (they stay pending: the next run retries them "
                     "while GA4's 72 h window allows)")
    if expired:
        parts.append(f"{expired:,} events aged past GA4's 72 h window before they could be sent (deferred.csv, "
                     "for Data Import)")
    cause = last_error_text((summary.get("send") or {}).get("last_error"))
    return "; ".join(parts) + (f"; last error {cause}" if cause else "")


def _top_reason(summary: Mapping[str, Any], key: str) -> str | None:
    """The most common reason under `key` (reject_reasons / filtered_reasons) over the sources."""
    best: tuple[int, str] | None = None
    for name, source in (summary.get("sources") or {}).items():
        for reason in source.get(key) or []:
            if best is None or reason["rows"] > best[0]:
                best = (reason["rows"], f"{reason['code']} {reason['reason']} ({reason['rows']:,} rows, source {name})")
    return best[1] if best else None


def _consent_starved(summary: Mapping[str, Any]) -> list[str]:
    """Sources that sent nothing for lack of consent: under `consent_default = "deny"` a source that maps no
    consent column rejects every row (CONSENT_DENIED), one whose consent column is empty filters every row
    (NO_CONSENT). Either is a policy to decide, not data to fix."""
    out = []
    for name, s in (summary.get("sources") or {}).items():
        in_scope = s.get("rows_in", 0) - s.get("outside_window", 0) - s.get("other_shard", 0)
        unmapped = (s.get("reject_codes") or {}).get("CONSENT_DENIED", 0)
        empty = (s.get("filtered_codes") or {}).get("NO_CONSENT", 0)
        if in_scope > 0 and (empty == in_scope or (unmapped and unmapped == in_scope - s.get("filtered", 0))):
            out.append(name)
    return out


def run_next_steps(summary: Mapping[str, Any], *, config_file: Path | str, out_dir: Path | str) -> list[str]:
    """The steps after one run (send, dry run or validation), most urgent first; empty when none is needed."""
    mode = summary.get("mode", "send")
    label = sent_label(mode)
    out = Path(out_dir)
    steps: list[str] = []
    sent = int(summary.get(label, 0))
    for err in summary.get("source_errors") or []:
        steps.append(f"Fix source {err['source']} (the error above), then run again; "
                     f"{command('sources', '--config', config_file)} shows the columns found and the mapping.")
    failed = int(summary.get("failed", 0)) + int((summary.get("earlier_runs") or {}).get("failed", 0))
    if failed and mode == "send":
        cause = last_error_text((summary.get("send") or {}).get("last_error"))
        steps.append(f"{failed:,} events were not delivered" + (f" (last error {cause})" if cause else "")
                     + "; they stay pending in the ledger. Once the endpoint answers, "
                     + command("run", "--config", config_file, "--out", out.with_name(out.name + "-retry"))
                     + " sends them (and nothing twice).")
    elif failed:
        steps.append(f"{failed:,} requests could not be validated (the debug endpoint did not answer): run "
                     f"{command('validate', '--config', config_file, '--debug-endpoint')} again once it answers.")
    deferred = int(summary.get("deferred", 0)) + int(summary.get("expired", 0))
    if deferred:
        historical = summary.get("historical")
        where = f"upload {out / 'deferred.csv'} in GA4 (Admin → Data Import → offline event data)"
        if mode != "send":
            where = "a real run writes them to deferred.csv for GA4 Data Import"
        steps.append(f"{deferred:,} events are older than GA4's 72 h window and cannot be sent: {where}; "
                     f"{command('deferred', '--config', config_file, '--out', 'deferred-import.csv')} writes every "
                     "deferred event not yet exported, once.")
        if isinstance(historical, Mapping) and historical.get("error"):
            steps.append("The [historical] table write failed: "
                         f"{command('historical', '--config', config_file, '--run-id', summary.get('run_id'))} "
                         "writes this run's deferred events again.")
    for name in _consent_starved(summary):
        steps.append(f"Source {name} sent nothing for lack of consent: with consent_default = \"deny\" a row "
                     "without recorded consent is never sent, and a source without a consent column rejects every "
                     f"row. Map consent_analytics in [sources.columns] of {config_file} to the column that records "
                     "consent, or set consent_default deliberately.")
    rejected = int(summary.get("rejected", 0)) + int(summary.get("rejected_at_send", 0))
    if rejected:
        top = _top_reason(summary, "reject_reasons")
        steps.append(f"{rejected:,} rows were rejected as bad data" + (f" (most common: {top})" if top else "")
                     + f": every row and reason is in {out / 'rejects.ndjson'}; fixed at the source, "
                     "the next run sends them.")
    no_session = int(summary.get("no_session", 0))
    if sent and no_session == sent:
        steps.append(f"None of the {sent:,} events carries a session id: GA4 shows their source / medium as "
                     "(not set). Map session_id in [sources.columns] to the column holding the _ga_<ID> cookie.")
    elif no_session:
        steps.append(f"{no_session:,} of {sent:,} events carry no session id (GA4 attributes them to no campaign).")
    if mode != "send" and sent and not summary.get("source_errors"):
        steps.append(f"Send them: {command('run', '--config', config_file, '--out', 'out/run')}")
    elif mode == "send" and sent:
        steps.append("Check they arrived once the export has them (the daily table lands within a day): "
                     + command("reconcile", "--config", config_file, "--run-id", summary.get("run_id"),
                               "--out", out.with_name(out.name + "-reconcile")))
    return steps
