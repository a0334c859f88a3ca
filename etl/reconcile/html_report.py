"""reconciliation.html: one self-contained page a person can open from a mail attachment.

Why self-contained: reports are archived and mailed; a page that loads scripts, fonts or images
from elsewhere breaks offline and leaks that it was opened. The plot is a PNG in a data: URI and
the style is inline. Tables are capped; the CSVs next to the page hold every row. Money stands beside
the counts: a value plot per currency next to the events plot, and the money table.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

import jinja2
import pandas as pd

from etl.reconcile.presentation import (
    fmt_count,
    fmt_date,
    fmt_money,
    fmt_share,
    present,
    reasons_frame,
    row_classes,
)
from etl.reconcile.result import Reconciliation

HTML_TABLE_LIMIT = 500
MAX_CURRENCY_PLOTS = 3  # value plots beside the counts; the money table lists every currency

# Fits a 1280 px window (the browser test measures it): the body is capped, tables shrink to it because
# long ids and names may break anywhere, and the plot scales down.
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:72rem;overflow-wrap:anywhere}
h1{padding:.6rem 1rem;border-radius:.4rem}
h1.reconciled{background:#e3f4e1;color:#1d5e1a}
h1.pending{background:#eef1f5;color:#2f3b4c}
h1.provisional{background:#fff4d6;color:#7a5a00}
h1.not_reconciled,h1.duplicated{background:#fbe1e1;color:#8a1c1c}
h1.export_unavailable{background:#e6e6f5;color:#2c2c6e}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem;max-width:100%}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;overflow-wrap:anywhere}
th{background:#f3f3f3}
img{max-width:100%;height:auto}
.note{color:#555;font-size:.9rem}
.next{font-size:1.05rem;padding:.5rem 1rem;border-left:.3rem solid #4c78a8;background:#f4f7fb}
.next ul{margin:.3rem 0;padding-left:1.2rem}
td.n{text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:normal}
tr.failed td{background:#fbe1e1;font-weight:600}
tr.provisional td{background:#fff8e6;color:#6b5200}
"""


def plot_png(dates: pd.DataFrame, money: pd.DataFrame | None = None) -> bytes:
    """Sent vs found per day as PNG bytes, events and beside them value per currency; provisional days hatched.

    matplotlib is imported here (its Figure API, no pyplot state) so importing the package stays fast.
    """
    from matplotlib.figure import Figure

    money = money if money is not None else pd.DataFrame(columns=["event_date", "currency", "sent_value", "found_value"])
    currencies = money.groupby("currency")["sent_value"].apply(lambda v: v.abs().sum()).sort_values(ascending=False)
    shown = list(currencies.index[:MAX_CURRENCY_PLOTS])
    width = max(6.0, 0.6 * len(dates) + 2)
    fig = Figure(figsize=(width * (1 + len(shown)), 3.6), dpi=100)
    axes = fig.subplots(1, 1 + len(shown), squeeze=False)[0]
    day_labels = [fmt_date(d) for d in dates["event_date"]]
    hatch = ["//" if p else "" for p in (dates["status"] == "provisional").tolist()]
    _bars(axes[0], day_labels, dates["sent"], dates["found"], hatch, "events", "Sent vs found per event date")
    for ax, currency in zip(axes[1:], shown, strict=True):
        per_day = money[money["currency"] == currency].set_index("event_date")
        sent = dates["event_date"].map(per_day["sent_value"]).fillna(0.0)
        found = dates["event_date"].map(per_day["found_value"]).fillna(0.0)
        _bars(ax, day_labels, sent, found, hatch, f"value ({currency})", f"Sent vs found value, {currency}")
    fig.suptitle("hatched: provisional dates (the export may still change)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _bars(ax, labels: list[str], sent: pd.Series, found: pd.Series, hatch: list[str], unit: str, title: str) -> None:
    positions = range(len(labels))
    ax.bar([p - 0.2 for p in positions], sent, width=0.4, label="sent (ledger)", color="#4c78a8")
    bars = ax.bar([p + 0.2 for p in positions], found, width=0.4, label="found (export)", color="#f58518")
    for bar, h in zip(bars, hatch, strict=True):
        bar.set_hatch(h)
    ax.set_xticks(list(positions), labels, rotation=45, ha="right")
    ax.set_ylabel(unit)
    top = max([1.0, *[abs(float(v)) for v in sent], *[abs(float(v)) for v in found]])
    low = min([0.0, *[float(v) for v in sent], *[float(v) for v in found]])  # refunds net below zero
    ax.set_ylim(low * 1.3, top * 1.3)
    ax.set_title(title)
    ax.legend(loc="upper left", ncols=2)


#: The per-date table's columns: what decides a date. The frame has more (excluded, difference, date
#: shifts, export rows…): all of them are in reconciliation.json and the CSVs, and 15 columns do not fit 1280 px.
DATE_TABLE_COLUMNS = ("event_date", "status", "sent", "found", "missing", "not_yet_arrived", "export_unavailable",
                      "missing_share", "duplicate_copies", "export", "export_reason")


def render_html(result: Reconciliation) -> str:
    """The whole page as text (templates/reconciliation.html.j2, every value escaped by Jinja2)."""
    png = base64.b64encode(plot_png(result.dates, result.money)).decode("ascii")
    t = result.totals
    facts = [
        ("run", result.run_id or "-"),
        ("selection", ", ".join(f"{k}={fmt_date(str(v).replace('-', '')) if k in ('since', 'until') else v}"
                                for k, v in result.selection.items() if v is not None) or "-"),
        ("export backend", result.settings.get("backend", "-")),
        ("generated at (UTC)", str(result.generated_at).replace("T", " ").removesuffix("+00:00").removesuffix("Z")),
        ("sent / found / missing", f"{fmt_count(t['sent'])} / {fmt_count(t['found'])} / {fmt_count(t['missing'])}"),
        ("arrived / not yet arrived / missing / export not available",
         f"{fmt_count(t.get('arrived', t['found']))} / {fmt_count(t.get('not_yet_arrived', 0))} / {fmt_count(t['missing'])} / "
         f"{fmt_count(t.get('export_unavailable', 0))}"),
        ("money (our marked events; refunds negative)", _money_text(result.money_totals)),
        ("export watermark (evidence)", _evidence_text(result.evidence)),
        ("resend window (wall clock)", _window_text(t)),
        ("excluded from the export (BigQuery link)",
         f"{fmt_count(t.get('excluded_from_export', 0))} ({result.settings.get('export_scope', {}).get('from', '-')})"),
        ("copies: duplicate ids / extra rows / rows with our resend marker",
         f"{fmt_count(t['duplicate_ids'])} / {fmt_count(t.get('duplicate_copies', 0))} / "
         f"{fmt_count(t.get('resend_copies', 0))}"),
        ("dates", f"{fmt_count(t.get('dates_final', 0))} final, {fmt_count(t.get('dates_provisional', 0))} provisional, "
                  f"{fmt_count(t.get('dates_failed', 0))} failed"),
        ("our ids seen only from another sender (not proof)", fmt_count(t.get("seen_from_other_sender", 0))),
        ("ids from other senders", fmt_count(t["extra_ids"])),
        ("found without a session id (ga_session_id)", fmt_share(t.get("no_session_share"))),
        ("found with a session source in the export (session_traffic_source_last_click)",
         "not in this export" if t.get("session_attributed_share") is None else fmt_share(t["session_attributed_share"])),
        ("found with a country in the export (geo.country)",
         "not in this export" if t.get("with_geo_share") is None else fmt_share(t["with_geo_share"])),
    ]
    not_sent = result.not_sent
    dates = result.dates[[c for c in DATE_TABLE_COLUMNS if c in result.dates]] if len(result.dates.columns) else result.dates
    return _template().render(
        style=_STYLE, tone=result.tone, headline=result.headline, next_steps=result.next_steps,
        verdict=str(result.verdict).replace("_", " "), exit_code=result.exit_code,
        tolerance=fmt_share(result.settings.get("tolerance") or 0),
        provisional_hours=fmt_count(result.settings.get("provisional_hours")), facts=facts, png=png,
        money=_table(result.money), dates=_table(dates, classes=row_classes(result.dates.head(HTML_TABLE_LIMIT))),
        rows=_table(result.rows), missing=_table(result.missing), duplicates=_table(result.duplicates),
        extras=_table(result.extras),
        runs=", ".join(not_sent.get("runs", [])) or "none recorded",
        not_sent_rows=fmt_count(not_sent.get("rejected", 0) + not_sent.get("filtered", 0) + not_sent.get("deferred", 0)),
        rejected=fmt_count(not_sent.get("rejected", 0)), filtered=fmt_count(not_sent.get("filtered", 0)),
        rejects=_table(reasons_frame(not_sent, "reject_reasons"), more="the run's rejects.ndjson has every row."),
        filters=_table(reasons_frame(not_sent, "filtered_reasons"), more="the run's summary.json has every reason."),
    )


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("etl.reconcile", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("reconciliation.html.j2")


def _money_text(totals: dict) -> str:
    if not totals:
        return "-"
    return "; ".join(f"{c} sent {fmt_money(m['sent_value'])}, found {fmt_money(m['found_value'])}, missing "
                     f"{fmt_money(m['missing_value'])}, duplicate {fmt_money(m['duplicate_value'])}"
                     for c, m in totals.items())


def _evidence_text(evidence: dict) -> str:
    if not evidence:
        return "-"
    return (f"{evidence.get('watermark') or 'none'} ({evidence.get('from')}): events sent before "
            f"{evidence.get('judges_events_sent_before') or '-'} can be judged missing")


def _window_text(t: dict) -> str:
    left = t.get("resend_window_left_h_min")
    if not (t.get("missing") or t.get("not_yet_arrived")):
        return "-"
    most_urgent = f", {left:g} h left for the most urgent" if left is not None else ""
    return f"{t.get('resendable', 0)} can still be resent{most_urgent}; {t.get('not_resendable', 0)} past it"


def _table(frame: pd.DataFrame, *, classes: list[str] | None = None,
           more: str = "the CSV has all.") -> dict[str, Any]:
    """Formatted cells (dates, %, integers, yes/no) for the template; failed rows red, provisional rows yellow."""
    head = frame.head(HTML_TABLE_LIMIT)
    shown = present(head)
    numeric = {c for c in head.columns if pd.api.types.is_numeric_dtype(head[c]) and head[c].dtype != bool}
    classes = classes if classes is not None else (row_classes(head) if len(head) else [])
    rows = [{"cls": cls, "cells": [{"text": v, "numeric": c in numeric} for c, v in row.items()]}
            for cls, (_, row) in zip(classes, shown.iterrows(), strict=True)]
    return {"columns": [str(c).replace("_", " ") for c in shown.columns], "rows": rows, "total": len(frame),
            "shown": len(head), "more": more if len(frame) > HTML_TABLE_LIMIT else ""}
