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


@dataclass(frozen=True)
class TextLayout:
    """What the hot path needs to parse the file the same way the diagnosis does."""

    path: Location
    compressed: bool
    encoding: str  # a Python codec name
    delimiter: str
    header: list[str]


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


def detect_encoding(sample: bytes, configured: str | None, path: Location) -> str:
    """Configured codec, else UTF-8 when the sample decodes as UTF-8, else cp1252 (Excel on Windows)."""
    if configured:
        try:
            return codecs.lookup(configured).name
        except LookupError:
            raise SourceError(str(path), None, None, f"unknown encoding {configured!r} in config") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)  # a multi-byte character cut by the sample end is fine
    except UnicodeDecodeError:
        return FALLBACK_ENCODING
    return "utf-8"


def decode_sample(sample: bytes, encoding: str) -> str:
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
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


def inspect(path: Location, encoding: str | None, delimiter: str | None) -> TextLayout:
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
    text = decode_sample(sample, codec)
    delim = delimiter or sniff_delimiter(first_physical_line(text))
    if delim == "\\t":
        delim = "\t"
    if len(delim) != 1:
        raise SourceError(str(path), None, None, f"delimiter must be one character, got {delim!r} in config")
    header = parse_header(text, delim, path)
    return TextLayout(path=path, compressed=compressed, encoding=codec, delimiter=delim, header=header)
