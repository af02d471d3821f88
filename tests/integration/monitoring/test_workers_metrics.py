"""/metrics with --workers 3: every scrape, whichever worker the kernel hands it to, reports
the whole server; counters never decrease, not even across a SIGKILLed and restarted worker."""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.support import wsclient
from tests.support.monitoring import assert_not_decreasing, counter_samples, scrape, value
from tests.support.procutil import RealtimeClient, UwsServer, children_of, pid_alive, wait_until

WORKERS = 3
# 30 connections over 3 workers: the chance that the kernel leaves one worker without any is
# about 3 * (2/3)^30, 1.5e-5.
CONNECTIONS = 30
SCRAPES = 20
# How long a worker may take to start or be replaced (a deadline: the waits poll).
WORKERS_TIMEOUT = 60.0


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("UWS_PY_")}


def per_worker(scraped: dict, name: str) -> dict:
    return {dict(labels)["worker"]: v for (sample, labels), v in scraped["samples"].items()
            if sample == name and "worker" in dict(labels)}


def quiet_scrapes(port: int) -> list:
    """SCRAPES scrapes in a row of an idle server."""
    return [scrape(port) for _ in range(SCRAPES)]


def test_scrapes_report_the_whole_server_and_counters_survive_a_killed_worker():
    with UwsServer("--workers", str(WORKERS), "--rate-limit", "off", "--no-access-log", env=clean_env()) as server:
        wait_until(lambda: value(scrape(server.port), "uws_workers") == WORKERS, "every worker answering")
        clients = [RealtimeClient(server.port) for _ in range(CONNECTIONS)]
        sent = 0
        for client in clients:
            for _ in range(3):
                assert client.request({"type": "PING"})["type"] == "PONG"
                sent += 1

        # Under load: a thread keeps sending while the scrapes go on; nothing may go back.
        stop = threading.Event()
        sent_under_load = [0]

        def load() -> None:
            while not stop.is_set():
                for client in clients[:10]:
                    client.send({"type": "PING"})
                    sent_under_load[0] += 1
                time.sleep(0.002)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            previous = scrape(server.port)
            for _ in range(SCRAPES):
                current = scrape(server.port)
                assert_not_decreasing(counter_samples(previous), counter_samples(current))
                previous = current
        finally:
            stop.set()
            loader.join(5)
        sent += sent_under_load[0]
        wait_until(lambda: value(scrape(server.port), "uws_messages_received_total") == sent,
                   f"{sent} messages counted")

        # Idle: twenty scrapes in a row, whatever worker answers each, say the same.
        scrapes = quiet_scrapes(server.port)
        first = scrapes[0]
        for other in scrapes[1:]:
            assert counter_samples(other) == counter_samples(first)
            assert value(other, "uws_connections") == CONNECTIONS
        assert value(first, "uws_connections_opened_total") == CONNECTIONS
        assert value(first, "uws_messages_received_total") == sent
        spread = per_worker(first, "uws_worker_connections")
        assert sorted(spread) == ["0", "1", "2"] and all(n > 0 for n in spread.values()), spread
        assert sum(spread.values()) == CONNECTIONS
        received = per_worker(first, "uws_worker_messages_received_total")
        assert sum(received.values()) == sent, received

        # SIGKILL one worker: its connections go, what it counted stays.
        victim = children_of(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not pid_alive(victim), "the killed worker gone")

        def replaced():
            try:
                scraped = scrape(server.port)
            except (wsclient.ConnectionClosed, ConnectionError):
                return None  # queued to the victim as it died
            restarts = per_worker(scraped, "uws_worker_restarts_total")
            return scraped if value(scraped, "uws_workers") == WORKERS and sum(restarts.values()) == 1 else None

        replacement = wait_until(replaced, "a replacement worker and its restart counted", timeout=WORKERS_TIMEOUT)
        assert_not_decreasing(counter_samples(first), counter_samples(replacement))
        assert value(replacement, "uws_messages_received_total") == sent
        assert value(replacement, "uws_connections_opened_total") == CONNECTIONS
        survivors = [c for c in clients if _still_open(c)]  # one PING each
        after = scrape(server.port)
        assert value(after, "uws_messages_received_total") == sent + len(survivors)
        assert value(after, "uws_connections") == len(survivors) < CONNECTIONS
        for scraped in quiet_scrapes(server.port):
            assert counter_samples(scraped) == counter_samples(after)
        for client in survivors:
            client.close()


def _still_open(client: RealtimeClient) -> bool:
    try:
        return client.request({"type": "PING"}, timeout=2.0)["type"] == "PONG"
    except (wsclient.ConnectionClosed, ConnectionError, TimeoutError, OSError):
        return False


def latest_reports(server: UwsServer) -> dict:
    """The last `perf` entry of each worker, from the JSON log on stderr."""
    import json

    latest = {}
    for line in server.stderr_text().splitlines():
        if '"perf"' not in line:
            continue
        entry = json.loads(line)
        latest[str(entry["perf"]["worker"])] = entry["perf"]
    return latest


def test_report_lines_of_the_workers_add_up_to_the_scrape():
    with UwsServer("--workers", "2", "--rate-limit", "off", "--no-access-log", "--report-interval", "1",
                   "--log-format", "json", env=clean_env()) as server:
        wait_until(lambda: value(scrape(server.port), "uws_workers") == 2, "both workers answering")
        clients = [RealtimeClient(server.port) for _ in range(12)]
        for client in clients:
            assert client.request({"type": "PING"})["type"] == "PONG"
        settled = scrape(server.port)
        assert value(settled, "uws_messages_received_total") == len(clients)

        def agreeing():
            reports = latest_reports(server)
            if sorted(reports) != ["0", "1"]:
                return None
            if sum(r["messages_in"] for r in reports.values()) != len(clients):
                return None
            return reports

        reports = wait_until(agreeing, "a report from each worker with every message counted", timeout=WORKERS_TIMEOUT)
        for worker, report in reports.items():
            assert report["connections"] == value(settled, "uws_worker_connections", worker=worker)
            assert report["messages_in"] == value(settled, "uws_worker_messages_received_total", worker=worker)
            assert report["messages_out"] == value(settled, "uws_worker_messages_sent_total", worker=worker)
        assert sum(r["connections"] for r in reports.values()) == len(clients)
        assert any('perf: worker=' in line for line in server.stderr_text().splitlines())
        for client in clients:
            client.close()


def test_a_rolling_reload_keeps_every_counter():
    with UwsServer("--workers", "2", "--rate-limit", "off", "--no-access-log", env=clean_env()) as server:
        wait_until(lambda: value(scrape(server.port), "uws_workers") == 2, "both workers answering")
        clients = [RealtimeClient(server.port) for _ in range(10)]
        for client in clients:
            assert client.request({"type": "PING"})["type"] == "PONG"
        for client in clients:  # else each old worker waits out its close timeout on them
            client.close()
        wait_until(lambda: value(scrape(server.port), "uws_connections") == 0, "the clients gone")
        before = scrape(server.port)
        assert value(before, "uws_messages_received_total") == len(clients)
        old = set(children_of(server.pid))
        server.signal(signal.SIGHUP)

        def reloaded():
            try:
                scraped = scrape(server.port)
            except (wsclient.ConnectionClosed, ConnectionError):
                return None  # queued to an old worker as it closed its listening socket
            restarts = per_worker(scraped, "uws_worker_restarts_total")
            done = not (old & set(children_of(server.pid))) and sum(restarts.values()) == 2
            return scraped if done and value(scraped, "uws_workers") == 2 else None

        after = wait_until(reloaded, "both workers replaced", timeout=WORKERS_TIMEOUT)
        assert_not_decreasing(counter_samples(before), counter_samples(after))
        assert value(after, "uws_messages_received_total") == len(clients)
        assert value(after, "uws_connections_opened_total") == len(clients)
