"""A byte stream of a CSV file in which every cell over the cap is replaced by a short marker.

Why: pyarrow's streaming reader needs a whole record inside one read block (4 MiB); a bigger cell made it
stop, and the stdlib re-read that names the problem held the whole line in memory (a 4 MB .csv.gz with one
1 GB cell took 2.9 GB and lost all 1,000 rows of its file with "malformed quoting"). The reader switches to
this stream only after such a stop; it drops an over-cap cell's bytes as they stream by (holding at most
``cap`` bytes of the cell being read), so memory stays bounded whatever the file holds, the marker travels
to the transform as an ordinary cell, and only that row is rejected.

Quoting follows RFC 4180 as pyarrow reads it: a quote opens a quoted cell only at the start of a cell, a
doubled quote inside it is a literal quote, and delimiters and line breaks inside it belong to the cell.
The quote characters are walked in Python (they are rare), the cell boundaries found with numpy.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np

#: What an over-cap cell becomes (NUL bytes: no export writes them, and no cell can look like this).
MARKER = b"\x00mpetl:over max_field_bytes\x00"
_QUOTE = ord('"')
_READ = 1 << 20


class CappedCells(io.RawIOBase):
    """`raw` (decompressed bytes of an ASCII-compatible encoding) with cells over `cap` bytes replaced."""

    def __init__(self, raw: BinaryIO, cap: int, delimiter: str) -> None:
        super().__init__()
        self._raw = raw
        self._cap = cap
        self._delimiter = ord(delimiter)
        self._cell = bytearray()  # the cell being read, while it is under the cap
        self._dropping = False  # the cell being read is over the cap: its bytes are skipped
        self._at_start = True  # the next byte starts a cell
        self._quoted = False  # inside a quoted cell
        self._skip_first_quote = False  # the next block starts with the second quote of a doubled quote
        self._out = b""
        self._offset = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._offset >= len(self._out) and not self._eof:
            self._out, self._offset = self._fill(), 0
        n = min(len(buffer), len(self._out) - self._offset)
        buffer[:n] = self._out[self._offset : self._offset + n]
        self._offset += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()

    # --- one block ---------------------------------------------------------------------------------------------

    def _fill(self) -> bytes:
        chunk = self._raw.read(_READ)
        if not chunk:
            self._eof = True
            return self._end_cell()
        data = np.frombuffer(chunk, dtype=np.uint8)
        separators = (data == self._delimiter) | (data == 10) | (data == 13)
        quoted = self._quoted_mask(chunk, data, separators)
        bounds = np.flatnonzero(separators & ~quoted)
        if not len(bounds):
            self._extend(chunk)
            self._at_start = False
            return b""
        out = bytearray()
        self._extend(chunk[: bounds[0]])
        out += self._end_cell()
        starts = bounds[:-1] + 1
        cursor = int(bounds[0])
        for k in np.flatnonzero(bounds[1:] - starts > self._cap):
            out += chunk[cursor : starts[k]]
            out += MARKER
            cursor = int(bounds[k + 1])
        out += chunk[cursor : bounds[-1] + 1]
        self._extend(chunk[bounds[-1] + 1 :])
        self._at_start = int(bounds[-1]) == len(chunk) - 1
        return bytes(out)

    def _quoted_mask(self, chunk: bytes, data: np.ndarray, separators: np.ndarray) -> np.ndarray:
        """Bytes inside quoted cells (their separators are text), walking only the quote characters."""
        n = len(chunk)
        edges = np.zeros(n + 1, dtype=np.int32)
        inside_from = 0 if self._quoted else None
        skip_first = self._skip_first_quote
        self._skip_first_quote = False
        quotes = np.flatnonzero(data == _QUOTE)
        i = 0
        while i < len(quotes):
            p = int(quotes[i])
            i += 1
            if skip_first and p == 0:  # the second quote of a doubled quote split by the block's start
                continue
            if inside_from is None:
                if self._at_start if p == 0 else bool(separators[p - 1]):
                    inside_from = p
                continue
            following = chunk[p + 1] if p + 1 < n else self._peek()
            if following == _QUOTE:  # a doubled quote: a literal quote, the cell goes on
                if p + 1 < n:
                    i += 1
                else:
                    self._skip_first_quote = True
                continue
            edges[inside_from] += 1
            edges[p + 1] -= 1
            inside_from = None
        if inside_from is not None:
            edges[inside_from] += 1
        self._quoted = inside_from is not None
        return np.cumsum(edges[:-1]) > 0

    def _peek(self) -> int | None:
        """The byte after this block (read ahead and put back)."""
        head = self._raw.read(1)
        if not head:
            return None
        self._raw = _Prepended(head, self._raw)
        return head[0]

    # --- the cell being read --------------------------------------------------------------------------------

    def _extend(self, data: bytes) -> None:
        if self._dropping or not data:
            return
        if len(self._cell) + len(data) > self._cap:
            self._dropping = True
            self._cell = bytearray()
        else:
            self._cell += data

    def _end_cell(self) -> bytes:
        out = MARKER if self._dropping else bytes(self._cell)
        self._cell = bytearray()
        self._dropping = False
        return out


class _Prepended(io.RawIOBase):
    """`raw` with `head` read first (one byte peeked by CappedCells)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        head, self._head = self._head, b""
        if size is not None and 0 <= size <= len(head):
            self._head = head[size:]
            return head[:size]
        return head + self._raw.read(-1 if size is None or size < 0 else size - len(head))

    def close(self) -> None:
        self._raw.close()
        super().close()
