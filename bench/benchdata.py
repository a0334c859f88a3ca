"""Bench inputs: a generic-CSV export and a config for it, generated with a fixed seed.

The files go to out/bench/data/ (never committed) and are reused while their name (rows, clients,
seed, end time) matches, so `make bench` pays for generating a size once.

Rows look like a CRM export: `_ga` cookies, GS2 session cookies, naive UTC close times spread over
the 60 h before `end` (inside GA4's 72 h window), quoted amounts with thousands separators, commas
inside a free-text notes column that is not mapped. The window is measured from the wall clock (as
Google does), so `end` defaults to the current hour: the values are the same for a seed, their times
move with the clock, and a file is regenerated when the hour turns.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "out" / "bench" / "data"
BLOCK = 250_000
SEED = 7
MEASUREMENT_ID = "G-BENCH0001"
HEADER = ["Order ID", "Closed At", "Amount", "Currency", "GA Client", "GA Session", "Rep", "Notes"]
COLUMNS = {"transaction_id": "Order ID", "timestamp": "Closed At", "value": "Amount", "currency": "Currency",
           "client_id": "GA Client", "session_id": "GA Session"}


def _s(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(str))


def generate(path: Path, rows: int, *, clients: int | None = None, end_s: int, seed: int = SEED) -> None:
    """`rows` rows; `clients` distinct `_ga` cookies (default: one per row), row i → client i % clients."""
    import pyarrow.compute as pc

    clients = clients or rows
    rng = np.random.default_rng(seed)
    cookie_random = rng.integers(10**8, 10**10, clients)
    cookie_first = end_s - 86_400 * 30 - rng.integers(0, 86_400 * 300, clients)
    tmp = path.with_suffix(".tmp")
    with pacsv.CSVWriter(tmp, pa.schema([(h, pa.string()) for h in HEADER])) as writer:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            ids = np.arange(start, start + n)
            who = ids % clients
            ts = end_s - 3600 - rng.integers(0, 60 * 3600, n)
            cents = rng.integers(100, 5_000_000, n)
            amount = pc.binary_join_element_wise(
                pa.array([f"{c:,}" for c in cents // 100]), pa.array([f"{c:02d}" for c in cents % 100]), ".")
            client = pc.binary_join_element_wise("GA1.1.", _s(cookie_random[who]), ".", _s(cookie_first[who]), "")
            session = pc.binary_join_element_wise("GS2.1.s", _s(ts - 300), "$o3$g1$t", _s(ts), "$j0$l0$h0", "")
            closed = pc.replace_substring(pa.array(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s")), "T", " ")
            table = pa.table({
                "Order ID": pc.binary_join_element_wise("T", _s(ids), ""), "Closed At": closed, "Amount": amount,
                "Currency": pa.array(np.array(["EUR", "USD", "GBP"])[ids % 3]), "GA Client": client,
                "GA Session": session, "Rep": pc.binary_join_element_wise("Rep ", _s(ids % 40), ""),
                "Notes": pc.binary_join_element_wise("call back, ref ", _s(ids), ""),
            })
            writer.write_table(table)
    tmp.replace(path)


def dataset(rows: int, *, clients: int | None = None, end_s: int | None = None) -> Path:
    """The CSV for these parameters, generated on first use (out/bench/data/)."""
    end_s = end_s if end_s is not None else current_hour()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"orders_{rows}_c{clients or rows}_e{end_s}_s{SEED}.csv"
    if not path.exists():
        for stale in DATA.glob(f"orders_{rows}_c{clients or rows}_e*_s{SEED}.csv"):  # an earlier hour's copy
            stale.unlink()
        generate(path, rows, clients=clients, end_s=end_s)
    return path


def current_hour() -> int:
    """The start of the current UTC hour, in seconds: the default end of generated event times."""
    return int(time.time()) // 3600 * 3600


def write_config(folder: Path, csv: Path, *, endpoint: str | None = None, concurrency: int | None = None) -> Path:
    """A one-source config for `csv`; the ledger lives in `folder`. endpoint None: Google's (dry runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = [f'endpoint = "{endpoint}"'] if endpoint else []
    if concurrency:
        dest.append(f"concurrency = {concurrency}")
    columns = "\n".join(f'{k} = "{v}"' for k, v in COLUMNS.items())
    text = f"""[property]
measurement_id = "{MEASUREMENT_ID}"
timezone = "Europe/London"

[destination]
{chr(10).join(dest)}

[ledger]
path = "{folder / 'ledger.sqlite'}"

[[sources]]
name = "bench"
kind = "csv"
path = "{csv}"
event = "purchase"
timezone = "UTC"
consent_default = "grant"
thousands = ","

[sources.columns]
{columns}
"""
    config = folder / "bench.toml"
    config.write_text(text)
    return config


if __name__ == "__main__":
    import sys

    print(dataset(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
