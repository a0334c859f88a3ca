"""How a delimited text file is opened: compression, encoding, delimiter, header row.

Why sniff: exports reach us from Excel on Windows (cp1252, `;` in European locales), from SaaS
tools (UTF-8 with a BOM, CRLF) and from scripts (gzip). Deciding once from the first bytes keeps the
hot path a single streaming pass; a configured `encoding`/`delimiter` always wins. The file may be
local or a URL on an object store (`etl.extract.location`).
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from typing import BinaryIO

from etl.errors import SourceError
from etl.extract.location import Location, check_file, open_bytes

GZIP_MAGIC = b"\x1f\x8b"
SAMPLE_BYTES = 1 << 16
MAX_HEADER_BYTES = 16 << 20
FALLBACK_ENCODING = "cp1252"
DELIMITER_CANDIDATES = (",", ";", "\t", "|")
# A cell larger than this (bytes as written in the file) rejects its row, not its file (config:
# `max_field_bytes` per source). 1 MiB is 10,000 times GA4's longest param value (100 characters).
DEFAULT_MAX_FIELD_BYTES = 1 << 20


@dataclass(frozen=True)
class TextLayout:
    """What the hot path needs to parse the file the same way the diagnosis does."""

    path: Location
    compressed: bool
    encoding: str  # a Python codec name
    delimiter: str
    header: list[str]
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES


def open_binary(path: Location, compressed: bool) -> BinaryIO:
    """The file's bytes, decompressed when gzip."""
    return open_bytes(path, "gzip" if compressed else None)  # type: ignore[return-value]


def check_exists(path: Location) -> None:
    check_file(path)


def is_gzip(path: Location) -> bool:
    with open_bytes(path) as fh:
        return fh.read(2) == GZIP_MAGIC


def read_sample(path: Location, compressed: bool, size: int = SAMPLE_BYTES) -> bytes:
    try:
        with open_binary(path, compressed) as fh:
            return fh.read(size)
    except (OSError, EOFError) as exc:
        raise SourceError(str(path), None, None, f"cannot be read ({type(exc).__name__}: not a valid gzip file?)") from None


# Byte-order marks, longest first: a UTF-32 LE mark starts with the UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),  # the reader uses utf-8-sig for utf-8: the mark is dropped
    (codecs.BOM_UTF16_LE, "utf-16"),  # Excel "Unicode text": UTF-16 LE with a BOM, tab-separated
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def detect_encoding(sample: bytes, configured: str | None, path: Location) -> str:
    """The codec to read the file with, in order: the config; a byte-order mark (UTF-8/16/32); strict
    UTF-8; charset-normalizer's best guess (UTF-16 without a mark, Cyrillic, CJK…); cp1252."""
    if configured:
        try:
            return codecs.lookup(configured).name
        except LookupError:
            raise SourceError(str(path), None, None, f"unknown encoding {configured!r} in config") from None
    for bom, codec in BOMS:
        if sample.startswith(bom):
            return codec
    if sample.count(b"\x00") > len(sample) // 4:  # UTF-16/32 without a mark (NUL is valid UTF-8)
        return _guess(sample)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)  # a multi-byte character cut by the sample end is fine
    except UnicodeDecodeError:
        return _guess(sample)
    return "utf-8"


def _guess(sample: bytes) -> str:
    """charset-normalizer's guess; among guesses about as clean as the best, a Windows code page wins
    (cp1252 first): on a short sample it cannot tell cp1251 from mac_cyrillic, and exports come from
    Excel on Windows far more often than from a Mac of the nineties."""
    from charset_normalizer import from_bytes

    results = list(from_bytes(sample[:SAMPLE_BYTES]))
    if not results:
        return FALLBACK_ENCODING
    floor = min(m.chaos for m in results)
    near = [m for m in results if m.chaos <= floor + 0.05]
    for wanted in (FALLBACK_ENCODING, "cp125"):
        for match in near:
            for name in match.could_be_from_charset:
                if name.startswith(wanted) and _fits(sample, name):
                    return codecs.lookup(name).name
    return codecs.lookup(results[0].encoding).name


def _fits(sample: bytes, codec: str) -> bool:
    try:
        codecs.getincrementaldecoder(codec)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def decode_sample(sample: bytes, encoding: str, path: Location | None = None) -> str:
    try:
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
    except UnicodeError as exc:  # e.g. "UTF-32 stream does not start with BOM": not this encoding at all
        raise SourceError(str(path), None, None, f"cannot be read as {encoding} ({exc}); set the source's encoding") from None
    return text.lstrip("\ufeff")


def sniff_delimiter(first_line: str) -> str:
    """The candidate occurring most often outside quotes in the header line; ',' when none does."""
    outside = first_line.split('"')[::2]  # segments at even positions are outside quotes
    counts = {d: sum(seg.count(d) for seg in outside) for d in DELIMITER_CANDIDATES}
    best = max(DELIMITER_CANDIDATES, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def first_physical_line(text: str) -> str:
    end = len(text)
    for sep in ("\r", "\n"):
        pos = text.find(sep)
        if pos != -1:
            end = min(end, pos)
    return text[:end]


def parse_header(text: str, delimiter: str, path: Location) -> list[str]:
    """The first CSV record (quoted headers and newlines inside them are honoured)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for record in reader:
            if record and any(cell.strip() for cell in record):
                return [cell.replace("\ufeff", "").strip() for cell in record]
    except csv.Error:
        raise SourceError(str(path), None, None, "the header row has malformed quoting") from None
    raise SourceError(str(path), None, None, "file is empty (no header row)")


def inspect(path: Location, encoding: str | None, delimiter: str | None,
            max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> TextLayout:
    """Open the file once to decide compression, encoding, delimiter and read the header row."""
    check_exists(path)
    compressed = is_gzip(path)
    sample = read_sample(path, compressed)
    size = SAMPLE_BYTES
    # A header longer than the sample (thousands of columns) would be cut short: read on until it ends.
    while len(sample) == size and b"\n" not in sample and b"\r" not in sample and size < MAX_HEADER_BYTES:
        size *= 4
        sample = read_sample(path, compressed, size)
    if not sample.strip():
        raise SourceError(str(path), None, None, "file is empty (no header row)")
    codec = detect_encoding(sample, encoding, path)
    text = decode_sample(sample, codec, path)
    delim = delimiter or sniff_delimiter(first_physical_line(text))
    if delim == "\\t":
        delim = "\t"
    if len(delim) != 1:
        raise SourceError(str(path), None, None, f"delimiter must be one character, got {delim!r} in config")
    header = parse_header(text, delim, path)
    return TextLayout(path=path, compressed=compressed, encoding=codec, delimiter=delim, header=header,
                      max_field_bytes=max_field_bytes)
