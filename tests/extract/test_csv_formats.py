"""Generic CSV/Parquet reading: encodings, delimiters, quoting, compression, numbering."""

from __future__ import annotations

import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.extract.conftest import read_all, source

MAP = {"transaction_id": "Order", "value": "Amount", "client_id": "Client"}


def test_utf8_with_bom_and_crlf_reads_first_header(write):
    path = write("bom.csv", "\ufeffOrder,Amount,Client\r\nA1,10.00,GA1.1.1.2\r\nA2,5,\r\n")
    frame, _ = read_all(source(path, columns=MAP))
    assert list(frame["transaction_id"]) == ["A1", "A2"]
    assert frame["client_id"].isna().tolist() == [False, True]


def test_cp1252_is_detected_and_decoded(write):
    path = write("win.csv", "Order;Amount;Client;Kunde\r\nA1;1.234,56;c1;Müller\r\n", encoding="cp1252")
    frame, _ = read_all(source(path, columns=MAP, params={"kunde": "Kunde"}, decimal=","))
    assert frame.loc[0, "value"] == "1234.56"
    assert frame.loc[0, "param.kunde"] == "Müller"


def test_configured_latin1_and_params(write):
    path = write("l1.csv", "Order,Amount,Client,Notiz\nA1,3,c,Größe\n", encoding="latin-1")
    frame, chunks = read_all(source(path, columns=MAP, params={"note": "Notiz"}, encoding="latin-1"))
    assert frame.loc[0, "param.note"] == "Größe"
    assert chunks[0].columns["param.note"] == "Notiz"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed_from_header(write, delimiter):
    text = delimiter.join(["Order", "Amount", "Client"]) + "\n" + delimiter.join(["A1", "7.50", "x"]) + "\n"
    frame, _ = read_all(source(write("d.csv", text), columns=MAP))
    assert frame.loc[0, "value"] == "7.50" and frame.loc[0, "client_id"] == "x"


def test_headers_match_case_insensitively_and_trimmed(write):
    path = write("h.csv", " order , AMOUNT,client\nA1,1,c\n")
    frame, chunks = read_all(source(path, columns=MAP))
    assert frame.loc[0, "transaction_id"] == "A1"
    assert chunks[0].columns["transaction_id"] == "order"


def test_quoted_newlines_keep_record_numbers(write):
    text = 'Order,Amount,Client\nA1,1,"multi\nline\nnote"\nA2,2,c\n"A\n3",3,c\n'
    frame, chunks = read_all(source(write("q.csv", text), columns=MAP), chunk_rows=1)
    assert frame["row"].tolist() == [1, 2, 3]
    assert frame["transaction_id"].tolist() == ["A1", "A2", "A\n3"]
    assert len(chunks) == 3


def test_gzip_file(write):
    data = gzip.compress(b"Order,Amount,Client\nA1,1,c\nA2,2,d\n")
    frame, _ = read_all(source(write("z.csv.gz", data), columns=MAP))
    assert frame["transaction_id"].tolist() == ["A1", "A2"]


def test_blank_rows_are_not_records_and_are_counted(write):
    text = "Order,Amount,Client\r\nA1,1,c\r\n\r\n,,\r\n   \r\nA2,2,d\r\n\r\n,,\r\n"
    frame, chunks = read_all(source(write("b.csv", text), columns=MAP))
    assert frame["row"].tolist() == [1, 2]
    assert sum(c.skipped_blank for c in chunks) == 5
    assert sum(c.lines for c in chunks) == 2


def test_row_numbers_exact_across_chunk_boundaries(write):
    rows = "".join(f"T{i},{i}.00,c{i}\n" for i in range(1, 1001))
    frame, chunks = read_all(source(write("n.csv", "Order,Amount,Client\n" + rows), columns=MAP), chunk_rows=7)
    assert frame["row"].tolist() == list(range(1, 1001))
    assert (frame["transaction_id"] == "T" + frame["row"].astype(str)).all()
    assert [len(c.frame) for c in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert frame["row"].dtype == "int64"


def test_empty_cells_are_na_and_unmapped_fields_absent(write):
    frame, _ = read_all(source(write("e.csv", "Order,Amount,Client,Other\nA1,,  ,x\n"), columns=MAP))
    assert frame.loc[0, "value"] is pd.NA and frame.loc[0, "client_id"] is pd.NA
    assert set(frame.columns) == {"row", "transaction_id", "value", "client_id"}


@pytest.mark.parametrize(
    ("raw", "decimal", "expected"),
    [
        ("$1,234.56", ".", "1234.56"),
        ("€1.234,56", ",", "1234.56"),
        ("£12", ".", "12"),
        ("-$0.95", ".", "-0.95"),
        ("USD 1,000.00", ".", "1000.00"),
        ("(12.50)", ".", "-12.50"),
        ("12,5OO.00", ".", "12,5OO.00"),  # unparseable: left for the transform to reject
        ("1,5", ".", "1,5"),
        ("12.50", ",", "12.50"),  # a dot in a decimal-comma file is not guessed at
    ],
)
def test_value_normalisation(write, raw, decimal, expected):
    frame, _ = read_all(source(write("v.csv", f'Order,Amount,Client\nA1,"{raw}",c\n'), columns=MAP, decimal=decimal))
    assert frame.loc[0, "value"] == expected


def test_date_and_time_columns_join_into_timestamp(write):
    path = write("t.csv", "Order,Day,At\nA1,2026-11-20,14:03:11\nA2,2026-11-20,\n")
    frame, chunks = read_all(source(path, columns={"transaction_id": "Order", "timestamp": "Day", "time": "At"}))
    assert frame["timestamp"].tolist() == ["2026-11-20 14:03:11", "2026-11-20"]
    assert chunks[0].columns["timestamp"] == "Day + At"


def test_parquet_numbers_and_timestamps_become_text(tmp_path):
    table = pa.table({
        "Order": ["A1", "A2", None],
        "Amount": pa.array([1.5, 20.0, 3.0]),
        "When": pa.array([1795180000_000000] * 3, type=pa.timestamp("us", tz="UTC")),
    })
    path = tmp_path / "s.parquet"
    pq.write_table(table, path, row_group_size=2)
    frame, _ = read_all(source(path, "parquet", columns={"transaction_id": "order", "value": "Amount", "timestamp": "When"}), chunk_rows=2)
    assert frame["row"].tolist() == [1, 2, 3]
    assert frame["value"].tolist() == ["1.5", "20", "3"]
    assert frame.loc[2, "transaction_id"] is pd.NA
    assert frame.loc[0, "timestamp"] == "2026-11-20T13:06:40.000000+0000"


def test_header_only_file_yields_no_records(write):
    frame, chunks = read_all(source(write("h.csv", "Order,Amount,Client\n"), columns=MAP))
    assert frame.empty and sum(len(c.frame) for c in chunks) == 0
