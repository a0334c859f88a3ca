"""The collector as its own process, and what its logs may show (never the secret)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from etl.collector import FaultOptions, read_store, spawn_collector


def test_spawned_collector_serves_and_is_stopped(tmp_path, build) -> None:
    with spawn_collector(tmp_path, measurement_id=build.MEASUREMENT_ID, api_secret=build.API_SECRET, now=build.NOW) as collector:
        assert collector.url.startswith("http://127.0.0.1:")
        assert collector.data_dir == tmp_path
        answer = httpx.post(
            f"{collector.url}/mp/collect",
            params={"measurement_id": build.MEASUREMENT_ID, "api_secret": build.API_SECRET},
            json=build.request(build.purchase("T-1")),
        )
        assert answer.status_code == 204
        assert collector.stats()["events_stored"] == 1
        process = collector.process
    assert process.poll() is not None  # stopped on exit
    assert read_store(tmp_path)["event_name"].tolist() == ["purchase"]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{collector.url}/__stats", timeout=1)


def test_process_log_has_access_lines_but_never_the_secret(tmp_path, build) -> None:
    with spawn_collector(tmp_path, measurement_id=build.MEASUREMENT_ID, api_secret=build.API_SECRET, now=build.NOW,
                         faults=FaultOptions(drop_rate=0.5)) as collector:
        for secret in (build.API_SECRET, "a-wrong-secret"):
            for path in ("/mp/collect", "/debug/mp/collect", "/nowhere"):
                httpx.post(f"{collector.url}{path}", params={"api_secret": secret, "measurement_id": "G-X"}, content=b"{}")
        _send_malformed_request_line(collector.url, build.API_SECRET)
        collector.stats()
        time.sleep(0.2)
        log = collector.read_log()
    assert "POST /mp/collect 204" in log
    assert "POST /debug/mp/collect 200" in log
    assert "POST /nowhere 404" in log
    assert build.API_SECRET not in log
    assert "a-wrong-secret" not in log
    assert "api_secret" not in log


def test_in_process_access_log_never_shows_the_query(mp, build, caplog, capfd) -> None:
    caplog.set_level(logging.INFO, logger="etl.collector")
    mp.collect(build.request(build.purchase("T-1")))
    mp.collect(build.request(build.purchase("T-1")), secret="other-secret-xyz")
    _send_malformed_request_line(mp.server.url, build.API_SECRET)
    time.sleep(0.1)
    assert "POST /mp/collect 204" in caplog.text
    assert "- - 400" in caplog.text  # the malformed request is logged, without its request line
    stderr = capfd.readouterr().err
    for text in (caplog.text, stderr):
        assert build.API_SECRET not in text
        assert "other-secret-xyz" not in text


def _send_malformed_request_line(url: str, secret: str) -> None:
    """A request line the stdlib rejects: its error message would quote it, query and all."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET /mp/collect?api_secret={secret} junk HTTP/1.1\r\n\r\n".encode())
        sock.recv(4096)


SENDER = textwrap.dedent(
    """
    import sys, httpx
    url, mid, secret, now_micros = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with httpx.Client(timeout=10) as client:
        for i in range(5000):
            body = {"client_id": "1.2", "events": [{"name": "purchase", "timestamp_micros": now_micros,
                    "params": {"transaction_id": f"T-{i}", "currency": "EUR", "value": 1.0}}]}
            r = client.post(url, params={"measurement_id": mid, "api_secret": secret}, json=body)
            if r.status_code == 204:
                print(f"T-{i}", flush=True)
    """
)


def test_events_acknowledged_to_a_killed_sender_are_already_stored(tmp_path, build) -> None:
    with spawn_collector(tmp_path, measurement_id=build.MEASUREMENT_ID, api_secret=build.API_SECRET, now=build.NOW) as collector:
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, f"{collector.url}/mp/collect", build.MEASUREMENT_ID, build.API_SECRET, str(build.NOW_MICROS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        acknowledged = []
        assert sender.stdout is not None
        for line in sender.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) == 30:
                break
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait(timeout=10)
        sender.stdout.close()
        stored = {e["transaction_id"] for e in read_store(tmp_path)["ecommerce"]}
        assert set(acknowledged) <= stored
        assert collector.stats()["events_stored"] == len(stored)


def test_cli_refuses_to_start_without_a_secret(tmp_path, build) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MP_API_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "etl.collector", "--data", str(tmp_path), "--measurement-id", build.MEASUREMENT_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "MP_API_SECRET" in result.stderr


def test_cli_reads_the_secret_from_a_file(tmp_path, build) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(build.API_SECRET + "\n")
    env = {k: v for k, v in os.environ.items() if k != "MP_API_SECRET"}
    process = subprocess.Popen(
        [sys.executable, "-m", "etl.collector", "--data", str(tmp_path / "data"), "--measurement-id", build.MEASUREMENT_ID,
         "--api-secret-file", str(secret_file), "--now", "2026-11-22T12:00:00Z"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = process.stdout.readline()
        assert '"collector_started"' in started
        url = started.split('"url": "')[1].split('"')[0]
        httpx.post(f"{url}/mp/collect", params={"measurement_id": build.MEASUREMENT_ID, "api_secret": build.API_SECRET},
                   json=build.request(build.purchase("T-1")))
        assert httpx.get(f"{url}/__stats").json()["events_stored"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
    stopped = process.stdout.read()
    process.stdout.close()
    assert '"collector_stopped"' in stopped
    assert build.API_SECRET not in stopped
