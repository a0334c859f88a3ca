"""Where a source file lives: a local path, or a URL on an object store opened through fsspec.

Why fsspec: one file interface for `gs://` (gcsfs), `s3://` (s3fs), `memory://`, `file://` and the
other stores fsspec knows, so the CSV and Parquet readers stay the same whatever the store. Local
paths keep the built-in `open()` and pyarrow's native reader (the fast path is unchanged); only a
URL goes through fsspec. The cloud back ends are optional extras (`mpetl[gcs]`, `mpetl[s3]`): a
missing one is a one-line error naming the extra to install, not an ImportError.

Object-store clients raise their own exception types (auth, HTTP, throttling), so every URL
operation turns *any* failure into a `SourceError` naming the URL and the exception type — never
its text, which may quote a signed URL or a credential hint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from etl.errors import SourceError

# scheme://… — a Windows drive ("C:\\x") or a relative path never matches.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The extra that brings each cloud back end (pyproject's optional dependencies).
_EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3"}

Location = Path | str
T = TypeVar("T")


def is_url(location: Location) -> bool:
    """True for `scheme://…` text; a `Path` is always local."""
    return isinstance(location, str) and bool(_URL.match(location))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _filesystem(url: str):  # -> (fsspec.AbstractFileSystem, path inside it)
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        scheme = _scheme(url)
        extra = _EXTRAS.get(scheme)
        hint = f"install mpetl[{extra}]" if extra else "install the fsspec back end for it"
        raise SourceError(url, None, None, f"reading {scheme}:// paths needs an extra package: {hint}") from None
    except ValueError:
        raise SourceError(url, None, None, f"unknown URL scheme {_scheme(url)!r}") from None


def _on_store(url: str, action: Callable[[], T]) -> T:
    """Run one object-store call; any failure becomes a one-line SourceError naming the URL."""
    try:
        return action()
    except SourceError:
        raise
    except FileNotFoundError:
        raise SourceError(url, None, None, "file not found") from None
    except PermissionError:
        raise SourceError(url, None, None, "access denied (check the credentials for this store)") from None
    except Exception as exc:  # noqa: BLE001 — store clients raise many types; the message must stay one line
        raise SourceError(url, None, None, f"cannot be read ({type(exc).__name__})") from None


def check_file(location: Location) -> None:
    """A SourceError unless `location` is an existing file."""
    if is_url(location):
        url = str(location)
        fs, path = _filesystem(url)
        if not _on_store(url, lambda: fs.exists(path)):
            raise SourceError(url, None, None, "file not found")
        if not _on_store(url, lambda: fs.isfile(path)):
            raise SourceError(url, None, None, "is not a file")
        return
    path = Path(location)
    if not path.exists():
        raise SourceError(str(path), None, None, "file not found")
    if not path.is_file():
        raise SourceError(str(path), None, None, "is not a file")


def open_bytes(location: Location, compression: str | None = None) -> IO[bytes]:
    """The file's bytes, decompressed when `compression` is "gzip"; the caller closes it."""
    if not is_url(location):
        if compression == "gzip":
            import gzip

            return gzip.open(location, "rb")  # noqa: SIM115 (caller closes)
        return open(location, "rb")  # noqa: SIM115 (caller closes)
    url = str(location)
    import fsspec

    _filesystem(url)  # a clear error for a missing back end before fsspec.open raises its own
    # OpenFile.open() ties the decompressor's close to the underlying store file.
    return _StoreFile(_on_store(url, lambda: fsspec.open(url, "rb", compression=compression).open()))


class _StoreFile:
    """A store's file whose reads fail only with OSError (with the type name, never the text).

    Why: the readers (pyarrow's CSV and Parquet readers, the strict CSV diagnosis) already turn an
    OSError into a one-line SourceError; a store client raising its own type mid-file (an HTTP or auth
    error) would otherwise escape as a traceback.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except (OSError, EOFError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 — see the class docstring
            raise OSError(f"store read failed ({type(exc).__name__})") from None

    def read(self, size: int = -1) -> bytes:
        return self._guard(lambda: self._raw.read(size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._guard(lambda: self._raw.seek(offset, whence))

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _StoreFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str):  # closed, seekable, readable, size, mode…
        value = getattr(self._raw, name)
        if name in _READS:
            return lambda *args: self._guard(lambda: value(*args))
        return value


_READS = frozenset({"read1", "readinto", "readinto1", "readline", "readlines"})



def file_name(location: Location) -> str:
    """The last part of a path or URL, for messages."""
    return str(location).rstrip("/").rsplit("/", 1)[-1] if is_url(location) else Path(location).name
