"""What the GA4 BigQuery export leaves out on purpose: excluded events and streams of the BigQuery link.

Why it matters: a link can exclude event names (`excludedEvents`) or export only some data streams
(`exportStreams`); an event that can never reach the export is not missing and must never be
resent (each resend would add a copy to GA4's reports). So such events read "excluded from the
export". The link is read through the GA4 Admin API (google-analytics-admin, v1alpha
`properties.bigQueryLinks`, developers.google.com/analytics/devguides/config/admin/v1/rest/v1alpha/properties.bigQueryLinks)
where credentials allow; else (offline, no credentials, the library not installed) from
`[reconcile] excluded_events`, and the report says which was used. Never required: the Admin API
is asked only for the real BigQuery export (no local `api_endpoint`) or when `admin_api_endpoint`
points at a local stand-in.

`exportStreams` holds `properties/{property}/dataStreams/{stream}` names; our stream is the web data
stream whose `measurement_id` is ours (`list_data_streams`). An empty list is taken as "every stream".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from etl.config import Config
from etl.reconcile.compare import Scope

ADMIN_SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
_TIMEOUT_S = 30.0
_DATASET_PROPERTY = re.compile(r"^analytics_(\d+)$")


@dataclass(frozen=True)
class ExportScope:
    """The scope and where it came from (a sentence for the report)."""

    scope: Scope
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"excluded_events": sorted(self.scope.excluded_events), "stream_exported": self.scope.stream_exported,
                "from": self.source}


def scope_from_link(link: Any, streams: Iterable[Any], measurement_id: str) -> Scope:
    """Map an Admin API `BigQueryLink` (and the property's `DataStream`s) to what reconcile needs."""
    exported = list(link.export_streams)
    ours = {s.name for s in streams if measurement_id in _stream_ids(s)}
    stream_exported = not exported or bool(ours & set(exported))
    return Scope(excluded_events=frozenset(link.excluded_events), stream_exported=stream_exported)


def _stream_ids(stream: Any) -> set[str | None]:
    """A DataStream's ids: a web stream's measurement id, an app stream's Firebase App ID."""
    return {getattr(getattr(stream, "web_stream_data", None), "measurement_id", None),
            getattr(getattr(stream, "android_app_stream_data", None), "firebase_app_id", None),
            getattr(getattr(stream, "ios_app_stream_data", None), "firebase_app_id", None)}


def property_id_of(config: Config) -> str | None:
    """`[property] property_id`, else the digits of the export dataset `analytics_<property_id>`."""
    if config.property.property_id:
        return config.property.property_id
    match = _DATASET_PROPERTY.match(config.reconcile.dataset or "")
    return match.group(1) if match else None


def export_scope(config: Config) -> ExportScope:
    """The link's scope from the Admin API where it can be asked, else the config's."""
    rec = config.reconcile
    configured = ExportScope(Scope(excluded_events=frozenset(rec.excluded_events)), "[reconcile] excluded_events")
    wants_api = rec.admin_api_endpoint is not None or (rec.backend == "bigquery" and rec.api_endpoint is None)
    if not wants_api:
        return configured
    prop = property_id_of(config)
    if prop is None:
        return _fallback(configured, "no property id ([property] property_id, or dataset analytics_<id>)")
    try:
        scope, link_name = _ask_admin_api(prop, config.property.mp_stream_id, rec.admin_api_endpoint)
    except ImportError:
        return _fallback(configured, "google-analytics-admin is not installed (pip install 'mpetl[ga4admin]')")
    except Exception as exc:  # noqa: BLE001 - any failure of an optional lookup falls back, named in one line
        return _fallback(configured, f"GA4 Admin API: {type(exc).__name__}: {_first_line(exc)}")
    if link_name is None:
        return _fallback(configured, f"GA4 Admin API: property {prop} has no BigQuery link")
    return ExportScope(scope, f"GA4 Admin API, {link_name}")


def _ask_admin_api(property_id: str, measurement_id: str, endpoint: str | None) -> tuple[Scope, str | None]:
    from google.analytics.admin_v1alpha import AnalyticsAdminServiceClient

    if endpoint:  # a local stand-in (tests): no credentials, plain HTTP
        from google.auth.credentials import AnonymousCredentials

        client = AnalyticsAdminServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                             client_options={"api_endpoint": endpoint})
    else:
        import google.auth

        credentials, _ = google.auth.default(scopes=[ADMIN_SCOPE])
        client = AnalyticsAdminServiceClient(transport="rest", credentials=credentials)
    parent = f"properties/{property_id}"
    links = list(client.list_big_query_links(parent=parent, timeout=_TIMEOUT_S))
    if not links:
        return Scope(), None
    link = links[0]  # a property has at most one BigQuery link
    streams = list(client.list_data_streams(parent=parent, timeout=_TIMEOUT_S)) if link.export_streams else []
    return scope_from_link(link, streams, measurement_id), link.name


def _fallback(configured: ExportScope, reason: str) -> ExportScope:
    return ExportScope(configured.scope, f"{configured.source} (Admin API not used: {reason})")


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).splitlines()[0][:200] if str(text) else ""
