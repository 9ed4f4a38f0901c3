"""Inference data collection: what it costs a scoring request, and whether it loses anything.

    python bench/collect.py [--requests 2000] [--clients 8] [--rounds 3]

A real endpoint router on loopback in front of a real ``ml.serve`` deployment (a trained diabetes
ridge model), scored by concurrent clients, alternately without a collector and with one writing
to Azurite (batches of 500 or every second). Prints client-side latency p50/p99 per round and the
median and the best over rounds, the p99 overhead (target <= 5 ms), this process's CPU time per
request (client, router and collector share it, so the difference is what collection costs, and
CPU time is far less disturbed by other load than latency), and count in vs count stored as read
back by ``core.feedback.collected`` (target: 0 lost). The machine's other load shows in every
latency figure: compare the two columns, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3

from core.adapters.blob_store import AzureBlobStore
from core.feedback.collected import read_inferences
from embedded.azurite import Azurite
from embedded.serving_collect import Collector
from embedded.serving_replica import Replica
from embedded.serving_router import Router, Routes
from ml.sample_data import write_batches
from ml.train import train


def _replica(tmp: Path) -> Replica:
    train(write_batches(tmp / "data", files=1, rows=80, seed=5, kind="good"), tmp / "model")

    def fetch(dest: Path) -> None:
        shutil.copytree(tmp / "model", dest, dirs_exist_ok=True)

    replica = Replica("bench/blue", fetch, {}, tmp / "replica", lambda r: None).start()
    while replica.state == "creating":
        time.sleep(0.05)
    if replica.state != "succeeded":
        raise SystemExit(f"the deployment did not start: {replica.error}")
    return replica


def _load(uri: str, requests: int, clients: int) -> list[float]:
    """Client-side latency (ms) of each request, ``clients`` at a time; every answer must be 200."""
    http = urllib3.PoolManager(maxsize=clients)
    bodies = [json.dumps({"data": [[round(0.01 * ((i + k) % 7 - 3), 4) for k in range(10)]]}).encode()
              for i in range(64)]
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        started = time.perf_counter()
        answer = http.request("POST", uri, body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"})
        took = (time.perf_counter() - started) * 1000
        if answer.status != 200:
            raise SystemExit(f"scoring failed: HTTP {answer.status} {answer.data[:200]!r}")
        with lock:
            latencies.append(took)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    return latencies


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(p * len(ordered)) // 100) - 1)] if ordered else float("nan")


def _round(replica: Replica, blobs: AzureBlobStore | None, args: argparse.Namespace,
           container: str) -> tuple[float, float, float, int, int]:
    collector = (Collector(blobs, container, workspace="bench", batch=500, flush_seconds=1)
                 if blobs is not None else None)
    router = Router(f"bench-{uuid.uuid4().hex[:6]}", collector=collector).start()
    router.update(Routes({"blue": 100}, {}, {"blue": replica.port}, {"blue": ("diabetes", "1")}))
    try:
        _load(router.scoring_uri, 100, args.clients)  # warm connections and the model
        cpu = time.process_time()
        latencies = _load(router.scoring_uri, args.requests, args.clients)
        if collector is not None:
            collector.flush()  # the writing is part of the cost
        cpu_us = (time.process_time() - cpu) / args.requests * 1e6
    finally:
        router.stop()
    stored = 0
    if collector is not None and blobs is not None:
        collector.close()
        now = datetime.now(UTC)
        stored = sum(1 for _ in read_inferences(blobs, container, endpoint=router.endpoint,
                                                since=now - timedelta(hours=1), until=now + timedelta(minutes=1)))
    return _pct(latencies, 50), _pct(latencies, 99), cpu_us, args.requests + 100, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    azurite = Azurite.on_free_ports().start()
    replica = _replica(tmp)
    blobs = AzureBlobStore.from_connection(azurite.connection_string)
    rows: dict[str, list[tuple[float, float, float]]] = {"without": [], "with": []}
    counts = [0, 0]
    try:
        for r in range(args.rounds):
            for label in ("without", "with"):
                p50, p99, cpu, sent, stored = _round(replica, blobs if label == "with" else None, args,
                                                     "bench-collected")
                rows[label].append((p50, p99, cpu))
                if label == "with":
                    counts[0] += sent
                    counts[1] += stored
                extra = f"  in {sent}, stored {stored}" if label == "with" else ""
                print(f"round {r + 1} {label:>7} collection: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                      f"CPU {cpu:5.0f} us/request{extra}", flush=True)
    finally:
        replica.stop()
        azurite.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in rows.items()}
    best = {k: min(r[1] for r in v) for k, v in rows.items()}
    print(f"\n{args.requests} requests x {args.rounds} rounds, {args.clients} concurrent clients, loopback router + "
          "ml.serve, collector -> Azurite")
    print(f"{'':>20} {'p50 ms':>8} {'p99 ms':>8} {'best p99':>9} {'CPU us/req':>11}")
    for label in ("without", "with"):
        print(f"{label + ' collection':>20} {med[label][0]:8.2f} {med[label][1]:8.2f} {best[label]:9.2f} "
              f"{med[label][2]:11.0f}")
    overhead = med["with"][1] - med["without"][1]
    print(f"p99 overhead (medians): {overhead:+.2f} ms, best rounds {best['with'] - best['without']:+.2f} ms "
          f"(target <= 5 ms); p99 ratio {med['with'][1] / med['without'][1]:.2f}x")
    print(f"collection CPU: {med['with'][2] - med['without'][2]:+.0f} us per request "
          f"({med['with'][2] / med['without'][2]:.2f}x the process's CPU per request)")
    print(f"count in {counts[0]}, count stored {counts[1]}, lost {counts[0] - counts[1]} (target 0)")


if __name__ == "__main__":
    main()
