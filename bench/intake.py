"""Intake throughput and latency through the local host (a real process) with Azurite.

    python bench/intake.py [--events 2000] [--clients 8] [--batch 1]

Each client thread posts BlobCreated events to the Event Grid webhook; with --batch 1 every
request carries one event, so request latency is per-event latency. Prints events/s and
p50/p99. Targets (issue 2): >= 500 events/s, p99 <= 25 ms on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded.azurite import Azurite
from tests.conftest import HostProcess, base_env, unique_prefix
from tests.payloads import sample


def event() -> dict:
    raw = sample("BlobCreated")
    raw["id"] = str(uuid.uuid4())
    return raw


def client(url: str, batches: list[list[dict]], latencies: list[float], failures: list[int]) -> None:
    session = requests.Session()
    headers = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    for batch in batches:
        body = json.dumps(batch)
        start = time.perf_counter()
        resp = session.post(f"{url}/runtime/webhooks/eventgrid?functionName=on_blob_created", data=body,
                            headers=headers, timeout=60)
        latencies.append(time.perf_counter() - start)
        if resp.status_code != 202:
            failures.append(resp.status_code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    azurite = Azurite.on_free_ports().start()
    env = base_env(azurite.connection_string, unique_prefix())
    env["REACTOR_LOG_LEVEL"] = "WARNING"
    host = HostProcess(env)
    try:
        warm = [[event()] for _ in range(20)]
        client(host.url, warm, [], [])
        events = [event() for _ in range(args.events)]
        batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
        shares: list[list[list[dict]]] = [batches[i::args.clients] for i in range(args.clients)]
        latencies: list[float] = []
        failures: list[int] = []
        threads = [threading.Thread(target=client, args=(host.url, s, latencies, failures)) for s in shares]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        host.stop()
        azurite.stop()
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    rate = args.events / elapsed
    print(f"intake through the local host + Azurite ({os.cpu_count()} cores): {args.events} events, "
          f"{args.clients} clients, {args.batch} event(s) per request")
    print(f"  {rate:8.1f} events/s   request latency p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
          f"failures {len(failures)}")
    print(f"  targets: >= 500 events/s ({rate / 500:.2f} of target), p99 <= 25 ms ({25 / p99:.2f} of target)")


if __name__ == "__main__":
    main()
