"""Test credentials for the Data Manager path: a real service-account JSON with a key made in the test.

The collector trusts the key's public half (`--dm-service-account`); the file's `token_uri` is the
collector's `/token`, so google-auth signs a real assertion and refreshes a real token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from etl.collector.datamanager import make_service_account

PROPERTY_ID = "123456789"  # the samples config's property


def service_account(path: Path, token_uri: str = "http://127.0.0.1:9/token") -> Path:
    info, _trust = make_service_account(token_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(info))
    return path


def point_at(path: Path, url: str) -> Path:
    """Make the file's token_uri the collector's /token (known once it listens)."""
    info = orjson.loads(path.read_bytes())
    info["token_uri"] = url.rstrip("/") + "/token"
    path.write_bytes(orjson.dumps(info))
    return path


def dm_destination(url: str, credentials: Path, quota_file: Path, **data_manager: Any) -> dict[str, Any]:
    """`[destination]` options that send to `url` through the Data Manager API."""
    return {"endpoint": url, "api": "data_manager",
            "data_manager": {"credentials_file": str(credentials), "quota_file": str(quota_file), **data_manager}}
