"""OAuth for the Data Manager API with google-auth: a service-account file or Application Default Credentials.

Why google-auth and not our own JWT code: it is what Google's client libraries use; it signs the
service account's assertion, posts it to the file's `token_uri` and refreshes the access token before
it expires. The scope is the one the API's proto declares (`google.api.oauth_scopes`):
`https://www.googleapis.com/auth/datamanager` (docs/data-manager.md).

The access token is a credential: it lives in this object and in the `Authorization` header of each
request, nothing else. It is never logged, never written, never put in an error; errors name the file
and what is wrong in one line (exit 2), before any event is marked in flight.

Offline, the local collector issues tokens at its `/token` (RFC 7523 JWT bearer grant, as Google's
token endpoint): a service-account JSON whose `token_uri` points there makes the real refresh path run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from etl.errors import MpetlError

SCOPE = "https://www.googleapis.com/auth/datamanager"
_KEY = "destination.data_manager.credentials_file"
# google-auth refreshes a token this long before it expires (its own margin is ~3.75 min).
_EARLY_S = 60.0


class CredentialsError(MpetlError):
    """Credentials that cannot give a token: one line, exit 2, nothing sent."""


def load_credentials(credentials_file: Path | None) -> Any:
    """Credentials scoped for the Data Manager API, from the file or from ADC; never a token yet."""
    import google.auth
    from google.auth import exceptions

    if credentials_file is not None:
        path = Path(credentials_file)
        if not path.is_file():
            raise CredentialsError(f"{path}: credentials file not found ({_KEY})")
        try:
            credentials, _project = google.auth.load_credentials_from_file(str(path), scopes=[SCOPE])
        except exceptions.DefaultCredentialsError as exc:
            raise CredentialsError(f"{path}: not usable Google credentials ({_first_line(exc)}) ({_KEY})") from None
        except (ValueError, OSError, UnicodeDecodeError):
            raise CredentialsError(f"{path}: not a Google credentials JSON file ({_KEY})") from None
        return credentials
    try:
        credentials, _project = google.auth.default(scopes=[SCOPE])
    except exceptions.DefaultCredentialsError:
        raise CredentialsError("no Application Default Credentials: set [destination.data_manager] credentials_file "
                               "or GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`") from None
    except (ValueError, OSError):
        raise CredentialsError("Application Default Credentials are not a usable Google credentials file "
                               "(GOOGLE_APPLICATION_CREDENTIALS)") from None
    return credentials


def _first_line(exc: BaseException) -> str:
    """google-auth's message, first line, cut short: it names the problem, never a key or a token."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.splitlines()[0][:160] if text else type(exc).__name__


class TokenSource:
    """A valid access token on demand, refreshed (once, under a lock) when it is about to expire."""

    def __init__(self, credentials: Any, *, label: str = "credentials") -> None:
        self._credentials = credentials
        self._label = label
        self._lock = threading.Lock()
        self.refreshes = 0
        self.last_refresh_s = 0.0

    def _fresh(self) -> bool:
        c = self._credentials
        if not c.token:
            return False
        expiry = getattr(c, "expiry", None)
        if expiry is None:
            return True
        left = (expiry.replace(tzinfo=dt.UTC) if expiry.tzinfo is None else expiry) - dt.datetime.now(dt.UTC)
        return left.total_seconds() > _EARLY_S

    def token(self) -> str:
        """Blocking: refresh when needed (the first call fetches the first token)."""
        if self._fresh():
            return self._credentials.token
        with self._lock:
            if not self._fresh():
                self._refresh()
            return self._credentials.token

    async def atoken(self) -> str:
        if self._fresh():
            return self._credentials.token
        return await asyncio.to_thread(self.token)

    def invalidate(self) -> None:
        """The endpoint said 401: the next call refreshes whatever the expiry says."""
        with self._lock:
            self._credentials.token = None

    def _refresh(self) -> None:
        from google.auth import exceptions
        from google.auth.transport.requests import Request

        started = time.monotonic()
        try:
            self._credentials.refresh(Request())
        except exceptions.RefreshError as exc:
            raise CredentialsError(f"{self._label}: the token endpoint refused the credentials "
                                   f"({_first_line(exc)})") from None
        except exceptions.TransportError:
            raise CredentialsError(f"{self._label}: cannot reach the token endpoint to get an access token") from None
        except (ValueError, TypeError):
            raise CredentialsError(f"{self._label}: the private key cannot sign a token request") from None
        if not self._credentials.token:
            raise CredentialsError(f"{self._label}: the token endpoint answered without an access token")
        self.refreshes += 1
        self.last_refresh_s = time.monotonic() - started
