"""Structural problems raise SourceError naming file, row and column — never the cell's value."""

from __future__ import annotations

import pytest

from etl.errors import SourceError
from tests.extract.conftest import read_all, source

MAP = {"transaction_id": "Order", "value": "Amount", "client_id": "Client"}
SECRET = "jane.secret@example.com"


def _error(src, chunk_rows: int = 100_000) -> SourceError:
    with pytest.raises(SourceError) as info:
        read_all(src, chunk_rows)
    return info.value


def test_missing_file_names_it(tmp_path):
    err = _error(source(tmp_path / "nope.csv", columns=MAP))
    assert err.path.endswith("nope.csv") and "not found" in str(err)


def test_missing_required_column_names_expected_header(write):
    err = _error(source(write("m.csv", "Order,Amount\nA1,1\n"), columns=MAP))
    assert err.column == "Client" and err.row is None
    assert "'Client'" in str(err) and "client_id" in str(err)


def test_vendor_kind_missing_default_header(write):
    err = _error(source(write("sf.csv", "Opportunity ID,Amount,Stage\n1,2,Closed Won\n"), "salesforce"))
    assert err.column == "Close Date"


def test_undecodable_bytes_name_row_and_column(write):
    head = "Order,Amount,Client\n" + "".join(f"A{i},1,c\n" for i in range(1, 3000))
    data = head.encode() + b"A3000,1,caf\xe9 " + SECRET.encode() + b"\n"  # cp1252 byte deep in a UTF-8 file
    err = _error(source(write("u.csv", data), columns=MAP, encoding="utf-8"), chunk_rows=500)
    assert (err.row, err.column) == (3000, "Client")
    assert SECRET not in str(err) and "caf" not in str(err)


def test_bytes_undefined_in_cp1252(write):
    data = b"Order,Amount,Client\nA1,1,c\nA2,1,\x81" + SECRET.encode() + b"\n"
    err = _error(source(write("c.csv", data), columns=MAP, encoding="cp1252"))
    assert (err.row, err.column) == (2, "Client") and SECRET not in str(err)


def test_unclosed_quote_names_the_row_where_it_opens(write):
    text = f'Order,Amount,Client\nA1,1,c\nA2,2,"{SECRET}\nA3,3,c\nA4,4,c\n'
    err = _error(source(write("q.csv", text), columns=MAP))
    assert err.row == 2 and SECRET not in str(err)
    assert "quot" in err.message


def test_extra_field_names_the_row(write):
    text = f"Order,Amount,Client\nA1,1,c\nA2,1,{SECRET},extra\n"
    err = _error(source(write("x.csv", text), columns=MAP))
    assert err.row == 2 and "4 fields" in err.message and SECRET not in str(err)


def test_short_row_is_structural_with_row_number(write):
    err = _error(source(write("s.csv", "Order,Amount,Client\nA1,1,c\nA2,1\n"), columns=MAP))
    assert err.row == 2


def test_empty_file(write):
    err = _error(source(write("e.csv", ""), columns=MAP))
    assert "empty" in err.message


def test_unknown_config_field_is_refused(write):
    err = _error(source(write("k.csv", "Order\nA\n"), columns={"transaction": "Order"}))
    assert "columns.transaction" in err.message


def test_bad_cells_are_not_errors(write):
    frame, _ = read_all(source(write("b.csv", "Order,Amount,Client\n,abc,???\n"), columns=MAP))
    assert frame.loc[0, "value"] == "abc" and frame["row"].tolist() == [1]
