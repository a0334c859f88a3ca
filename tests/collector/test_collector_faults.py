"""Injected faults: each seeded, each repeatable (same seed, same request order → same outcomes)."""

from __future__ import annotations

import time

import httpx
import pytest

from etl.collector import FaultOptions, read_store


def _outcomes(mp, build, n: int) -> list[int | str]:
    """Send n one-event requests in order; the answer of each (status, or the transport error)."""
    out: list[int | str] = []
    for i in range(n):
        try:
            out.append(mp.collect(build.request(build.purchase(f"T-{i}"))).status_code)
        except httpx.TransportError:
            out.append("reset")
    return out


def _stored(mp) -> set[str]:
    frame = read_store(mp.server.data_dir)
    return {e["transaction_id"] for e in frame["ecommerce"]} if len(frame) else set()


def test_drop_rate_stores_a_seeded_repeatable_subset(make_collector, build) -> None:
    runs = {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        mp = make_collector(faults=FaultOptions(drop_rate=0.5, seed=seed))
        assert set(_outcomes(mp, build, 200)) == {204}  # a drop looks like success, as with GA4
        runs[name] = _stored(mp)
        stats = mp.stats()
        assert stats["events_stored"] == len(runs[name])
        assert stats["dropped"] == {"injected_drop": 200 - len(runs[name])}
        assert stats["injected"] == {"drop": 200 - len(runs[name])}
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    assert 60 <= len(runs["a"]) <= 140


def test_fail_rate_answers_500_or_503_repeatably_and_records_nothing_then(make_collector, build) -> None:
    first = _outcomes(make_collector(faults=FaultOptions(fail_rate=0.4, seed=3)), build, 60)
    again = make_collector(faults=FaultOptions(fail_rate=0.4, seed=3))
    second = _outcomes(again, build, 60)
    assert first == second
    assert {500, 503, 204} == set(first)
    assert len(_stored(again)) == first.count(204)
    stats = again.stats()
    assert stats["injected"] == {"fail_500": first.count(500), "fail_503": first.count(503)}
    assert stats["events_refused"] == first.count(500) + first.count(503)


def test_throttle_answers_429_with_retry_after(make_collector, build) -> None:
    mp = make_collector(faults=FaultOptions(throttle_rate=1.0))
    answer = mp.collect(build.request(build.purchase("T-1")))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"
    assert _stored(mp) == set()
    assert mp.stats()["injected"] == {"throttle": 1}


def test_reset_cuts_the_connection_after_storing_and_is_repeatable(make_collector, build) -> None:
    first_mp = make_collector(faults=FaultOptions(reset_rate=0.3, seed=5))
    first = _outcomes(first_mp, build, 40)
    second = _outcomes(make_collector(faults=FaultOptions(reset_rate=0.3, seed=5)), build, 40)
    assert first == second
    assert {"reset", 204} == set(first)
    # The answer is lost, not the request: a sender that retries creates a duplicate, as in real life.
    assert len(_stored(first_mp)) == 40
    assert first_mp.stats()["injected"] == {"reset": first.count("reset")}


def test_latency_and_seeded_jitter(make_collector, build) -> None:
    mp = make_collector(faults=FaultOptions(latency_ms=40, latency_jitter_ms=40, seed=1))
    durations = []
    for i in range(5):
        start = time.perf_counter()
        assert mp.collect(build.request(build.purchase(f"T-{i}"))).status_code == 204
        durations.append(time.perf_counter() - start)
    assert all(0.04 <= d < 0.5 for d in durations)
    assert max(durations) - min(durations) > 0.002  # jitter varies


def test_faults_apply_to_collect_only(make_collector, build) -> None:
    mp = make_collector(faults=FaultOptions(fail_rate=1.0))
    assert mp.collect(build.request(build.purchase("T-1"))).status_code in (500, 503)
    assert mp.debug(build.request(build.purchase("T-1"))).status_code == 200
    assert mp.http.get("/__stats").status_code == 200


@pytest.mark.parametrize(
    "options",
    [{"fail_rate": -0.1}, {"drop_rate": 1.5}, {"fail_rate": 0.6, "throttle_rate": 0.5}, {"latency_ms": -1},
     {"latency_jitter_ms": float("nan")}, {"fail_rate": float("nan")}],
)
def test_impossible_fault_options_are_refused(options) -> None:
    with pytest.raises(ValueError):
        FaultOptions(**options)
