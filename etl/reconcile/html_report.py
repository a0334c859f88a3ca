"""reconciliation.html: one self-contained page a person can open from a mail attachment.

Why self-contained: reports are archived and mailed; a page that loads scripts, fonts or images
from elsewhere breaks offline and leaks that it was opened. The plot is a PNG in a data: URI and
the style is inline. Tables are capped; the CSVs next to the page hold every row.
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

from etl.reconcile.result import Reconciliation

HTML_TABLE_LIMIT = 500

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:72rem}
h1{padding:.6rem 1rem;border-radius:.4rem}
h1.reconciled{background:#e3f4e1;color:#1d5e1a}
h1.provisional{background:#fff4d6;color:#7a5a00}
h1.not_reconciled{background:#fbe1e1;color:#8a1c1c}
h1.export_unavailable{background:#e6e6f5;color:#2c2c6e}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f3f3f3}
.note{color:#555;font-size:.9rem}
"""


def plot_png(dates: pd.DataFrame) -> bytes:
    """Sent vs found per day as PNG bytes; provisional days drawn hatched.

    matplotlib is imported here (its Figure API, no pyplot state) so importing the package stays fast.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.6 * len(dates) + 2), 3.6), dpi=100)
    ax = fig.subplots()
    positions = range(len(dates))
    provisional = (dates["status"] == "provisional").tolist()
    hatch = ["//" if p else "" for p in provisional]
    ax.bar([p - 0.2 for p in positions], dates["sent"], width=0.4, label="sent (ledger)", color="#4c78a8", hatch=None)
    bars = ax.bar([p + 0.2 for p in positions], dates["found"], width=0.4, label="found (export)", color="#f58518")
    for bar, h in zip(bars, hatch, strict=True):
        bar.set_hatch(h)
    ax.set_xticks(list(positions), dates["event_date"].tolist(), rotation=45, ha="right")
    ax.set_ylabel("events")
    ax.set_ylim(
        0, max(1, int(dates["sent"].max() if len(dates) else 0), int(dates["found"].max() if len(dates) else 0)) * 1.3
    )
    ax.set_title("Sent vs found per event date (hatched: provisional)")
    ax.legend(loc="upper left", ncols=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def render_html(result: Reconciliation) -> str:
    """The whole page as text."""
    png = base64.b64encode(plot_png(result.dates)).decode("ascii")
    t = result.totals
    e = html.escape
    facts = [
        ("run", result.run_id or "-"),
        ("selection", ", ".join(f"{k}={v}" for k, v in result.selection.items() if v is not None) or "-"),
        ("export backend", result.settings.get("backend", "-")),
        ("generated at (UTC)", result.generated_at),
        ("sent / found / missing", f"{t['sent']} / {t['found']} / {t['missing']}"),
        ("arrived / not yet arrived / missing / export not available",
         f"{t['found']} / {t.get('not_yet_arrived', 0)} / {t['missing']} / {t.get('export_unavailable', 0)}"),
        ("resend window (wall clock)", _window_text(t)),
        ("our ids seen only from another sender (not proof)", str(t.get("seen_from_other_sender", 0))),
        ("duplicate ids", str(t["duplicate_ids"])),
        ("ids from other senders", str(t["extra_ids"])),
        (
            "found without a session id (ga_session_id)",
            "-" if t.get("no_session_share") is None else f"{t['no_session_share']:.1%}",
        ),
        (
            "found with a session source in the export (session_traffic_source_last_click)",
            "not in this export" if t.get("session_attributed_share") is None else f"{t['session_attributed_share']:.1%}",
        ),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>mpetl reconciliation</title>',
        f"<style>{_STYLE}</style></head><body>",
        f'<h1 id="verdict" class="{e(result.verdict)}">{e(result.headline)}</h1>',
        f'<p class="note">verdict: <strong>{e(result.verdict)}</strong>, exit code {result.exit_code}. '
        f"Tolerance {result.settings.get('tolerance')}; dates younger than "
        f"{result.settings.get('provisional_hours')} h after their end are provisional.</p>",
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts) + "</table>",
        f'<img alt="sent vs found per day" src="data:image/png;base64,{png}">',
        "<h2>Per date</h2>",
        _table(result.dates),
        "<h2>Per date and event</h2>",
        _table(result.rows),
        f"<h2>Missing or not yet arrived ({len(result.missing)})</h2>",
        '<p class="note">Sent according to the ledger, not found in the export with our mpetl_run marker. '
        "state: missing (absent after the arrival grace, or on a final date) or not_yet_arrived; "
        "resendable while the 72 h window (wall clock) allows: <code>mpetl resend --run-id RUN</code>.</p>",
        _table(result.missing),
        f"<h2>Duplicates ({len(result.duplicates)})</h2>",
        '<p class="note">Found more often than sent; possible_duplicate marks events the ledger resent after a crash.</p>',
        _table(result.duplicates),
        f"<h2>From other senders ({len(result.extras)})</h2>",
        '<p class="note">In the export but not explained by the sent events (e.g. the browser tag). They do not fail the verdict.</p>',
        _table(result.extras),
        "</body></html>",
    ]
    return "\n".join(parts)


def _window_text(t: dict) -> str:
    left = t.get("resend_window_left_h_min")
    if not (t.get("missing") or t.get("not_yet_arrived")):
        return "-"
    most_urgent = f", {left:g} h left for the most urgent" if left is not None else ""
    return f"{t.get('resendable', 0)} can still be resent{most_urgent}; {t.get('not_resendable', 0)} past it"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="note">none</p>'
    shown = frame.head(HTML_TABLE_LIMIT).to_html(index=False, escape=True, na_rep="", border=0)
    if len(frame) > HTML_TABLE_LIMIT:
        shown += f'<p class="note">first {HTML_TABLE_LIMIT} of {len(frame)} rows; the CSV has all.</p>'
    return shown
