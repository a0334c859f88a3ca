"""Encodings: byte-order marks first (Excel "Unicode text" is UTF-16 LE + BOM, tab-separated), then a
detector, then cp1252; a header that does not match names the encoding it was read with."""

from __future__ import annotations

import codecs
from pathlib import Path

import orjson
import pytest

from etl.extract.text_file import inspect
from tests.cli.common import NOW, crm_config

ROWS = "cookie\tclosed\tdeal\tamount\tcur\tStage\r\nGA1.1.111.222\t2026-11-20 10:00:00\tD1\t10\tEUR\tGewonnen – Müller\r\n"


@pytest.mark.parametrize("raw,expected", [
    (codecs.BOM_UTF16_LE + ROWS.encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + ROWS.encode("utf-16-be"), "utf-16"),
    (ROWS.encode("utf-32"), "utf-32"),
    (codecs.BOM_UTF8 + ROWS.encode(), "utf-8"),
    (ROWS.encode("utf-16-le"), "utf-16-le"),  # no mark: the detector sees it
    (ROWS.replace("–", "-").encode("cp1252"), "cp1252"),
    (("Заказ;Клиент;Сумма\nА1;Иванов Петр;100\nА2;Смирнова Анна;200\n" * 3).encode("cp1251"), "cp1251"),
])
def test_detected_encodings_give_the_true_header(tmp_path, raw, expected):
    path = tmp_path / "export.txt"
    path.write_bytes(raw)
    layout = inspect(path, None, None)
    assert layout.encoding == expected
    assert layout.header[0] in ("cookie", "Заказ")


def test_an_excel_unicode_text_export_just_works(run_mpetl, tmp_path: Path):
    config = crm_config(tmp_path)
    (tmp_path / "deals.csv").write_bytes(codecs.BOM_UTF16_LE + ROWS.encode("utf-16-le"))
    result = run_mpetl("validate", "--config", str(config), "--now", NOW)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout.splitlines()[-1])["would_send"] == 1


@pytest.mark.parametrize("encoding,words", [("utf-16", "read as utf-16"), ("utf-32", "cannot be read as utf-32")])
def test_a_wrong_encoding_is_one_line_naming_the_encoding(run_mpetl, tmp_path: Path, encoding, words):
    config = crm_config(tmp_path)
    config.write_text(config.read_text().replace('consent_default = "grant"', f'consent_default = "grant"\nencoding = "{encoding}"'))
    (tmp_path / "deals.csv").write_bytes(ROWS.encode("utf-8"))
    result = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
