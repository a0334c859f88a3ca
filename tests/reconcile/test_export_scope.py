"""Events the BigQuery link leaves out of the export read "excluded from the export", never missing.

The link is read with the real google-analytics-admin client (REST transport) from a local stand-in
that answers the documented JSON of `properties.bigQueryLinks.list` and `properties.dataStreams.list`
(developers.google.com/analytics/devguides/config/admin/v1/rest/v1alpha/properties.bigQueryLinks):
Google's Admin API has no offline twin. Without it, `[reconcile] excluded_events` is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.analytics.admin_v1alpha.types import BigQueryLink, DataStream

from etl.reconcile import reconcile
from etl.reconcile.export_scope import scope_from_link

from .builders import Scenario, export_row, ids

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = "20261115"
PROPERTY = "424242"
OUR_STREAM = f"properties/{PROPERTY}/dataStreams/1001"


def test_a_bigquerylink_maps_to_excluded_events_and_whether_our_stream_is_exported() -> None:
    streams = [DataStream(name=OUR_STREAM, web_stream_data=DataStream.WebStreamData(measurement_id="G-TEST123")),
               DataStream(name=f"properties/{PROPERTY}/dataStreams/1002",
                          web_stream_data=DataStream.WebStreamData(measurement_id="G-OTHER"))]
    link = BigQueryLink(name=f"properties/{PROPERTY}/bigQueryLinks/a1", excluded_events=["refund", "generate_lead"],
                        export_streams=[OUR_STREAM])
    scope = scope_from_link(link, streams, "G-TEST123")
    assert (scope.excluded_events, scope.stream_exported) == (frozenset({"refund", "generate_lead"}), True)

    others_only = BigQueryLink(export_streams=[f"properties/{PROPERTY}/dataStreams/1002"])
    assert scope_from_link(others_only, streams, "G-TEST123").stream_exported is False
    every_stream = BigQueryLink()  # no list: nothing narrowed
    assert scope_from_link(every_stream, [], "G-TEST123").stream_exported is True


class _AdminApi(BaseHTTPRequestHandler):
    """GA4 Admin API v1alpha, as much as reconcile reads: the property's BigQuery links and data streams."""

    answers: dict[str, tuple[int, dict]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?")[0]
        self.seen.append(path)
        status, body = self.answers.get(path, (404, {"error": {"code": 404, "message": "not found"}}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin_api() -> Iterator[type[_AdminApi]]:
    handler = type("AdminApi", (_AdminApi,), {"answers": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def _scenario(tmp_path: Path) -> Scenario:
    s = Scenario(tmp_path)
    s.arrive(s.send(DAY, ids("P", 4)))
    s.send(DAY, ids("R", 2), event_name="refund")  # never in the export: the link excludes refunds
    return s


def test_events_the_link_excludes_are_neither_missing_nor_resendable(tmp_path: Path, admin_api) -> None:
    admin_api.answers = {
        f"/v1alpha/properties/{PROPERTY}/bigQueryLinks": (200, {"bigqueryLinks": [{
            "name": f"properties/{PROPERTY}/bigQueryLinks/a1", "project": "projects/9", "dailyExportEnabled": True,
            "excludedEvents": ["refund"], "exportStreams": [OUR_STREAM]}]}),
        f"/v1alpha/properties/{PROPERTY}/dataStreams": (200, {"dataStreams": [{
            "name": OUR_STREAM, "type": "WEB_DATA_STREAM", "webStreamData": {"measurementId": "G-TEST123"}}]}),
    }
    s = _scenario(tmp_path)
    config = s.build(admin_api_endpoint=admin_api.url, excluded_events=["purchase"])  # the API wins over config
    config = _with_property_id(config)

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("reconciled", 0)
    states = result.events.set_index("transaction_id")
    assert states.loc[["R-0000", "R-0001"], "state"].tolist() == ["excluded", "excluded"]
    assert not states.loc[["R-0000", "R-0001"], "resendable"].any()
    assert result.missing.empty
    totals = result.to_dict()["totals"]
    assert (totals["excluded_from_export"], totals["found"], totals["missing"]) == (2, 4, 0)
    scope = result.to_dict()["settings"]["export_scope"]
    assert scope == {"excluded_events": ["refund"], "stream_exported": True,
                     "from": f"GA4 Admin API, properties/{PROPERTY}/bigQueryLinks/a1"}
    assert "excluded from the export 2" in result.summary_text()
    assert admin_api.seen == [f"/v1alpha/properties/{PROPERTY}/bigQueryLinks", f"/v1alpha/properties/{PROPERTY}/dataStreams"]


def test_a_link_that_does_not_export_our_stream_excludes_everything(tmp_path: Path, admin_api) -> None:
    admin_api.answers = {
        f"/v1alpha/properties/{PROPERTY}/bigQueryLinks": (200, {"bigqueryLinks": [{
            "name": f"properties/{PROPERTY}/bigQueryLinks/a1", "exportStreams": [f"properties/{PROPERTY}/dataStreams/7"]}]}),
        f"/v1alpha/properties/{PROPERTY}/dataStreams": (200, {"dataStreams": [{
            "name": OUR_STREAM, "webStreamData": {"measurementId": "G-TEST123"}}]}),
    }
    s = Scenario(tmp_path)
    s.send(DAY, ids("P", 3))
    s.exported.append(export_row("WEB-1", DAY, run_marker=None))  # the site's tag: the day's table exists
    result = reconcile(_with_property_id(s.build(admin_api_endpoint=admin_api.url)), out_dir=tmp_path / "out",
                       run_id="run-1", now=NOW)
    assert result.to_dict()["totals"]["excluded_from_export"] == 3 and result.missing.empty
    assert result.exit_code == 0


def test_without_the_admin_api_the_config_names_the_excluded_events(tmp_path: Path, admin_api) -> None:
    admin_api.answers = {f"/v1alpha/properties/{PROPERTY}/bigQueryLinks": (
        403, {"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}})}
    s = _scenario(tmp_path)
    result = reconcile(_with_property_id(s.build(admin_api_endpoint=admin_api.url, excluded_events=["refund"])),
                       out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.to_dict()["totals"]["excluded_from_export"]) == ("reconciled", 2)
    source = result.to_dict()["settings"]["export_scope"]["from"]
    assert source.startswith("[reconcile] excluded_events (Admin API not used: GA4 Admin API: Forbidden")

    offline = reconcile(s.build(excluded_events=[]), out_dir=tmp_path / "plain", run_id="run-1", now=NOW)
    assert (offline.verdict, offline.exit_code) == ("not_reconciled", 3)  # not excluded: the refunds are missing
    assert sorted(offline.missing["transaction_id"]) == ["R-0000", "R-0001"]
    assert offline.to_dict()["settings"]["export_scope"]["from"] == "[reconcile] excluded_events"


def _with_property_id(config):
    from dataclasses import replace

    return replace(config, property=replace(config.property, property_id=PROPERTY))
