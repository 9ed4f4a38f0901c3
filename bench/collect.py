"""Inference data collection: what it costs a scoring request, and whether it loses anything.

    python bench/collect.py [--requests 2000] [--clients 8] [--rounds 3] [--batch 500] [--clients-in-process]

A real endpoint router on loopback in front of a real ``ml.serve`` deployment (a trained diabetes
ridge model), scored by concurrent clients, alternately without a collector and with one writing
to Azurite (batches of ``--batch`` or every second). The process layout is the product's: the router
and the collector share this process, as they share the serving control plane's, with its interpreter
settings (``embedded.serving.tune_interpreter``: the GIL switch interval); the clients are
another process, as an endpoint's callers are (``--clients-in-process`` puts their threads in this
one, competing for its GIL, as the first version of this bench did). Prints client-side latency
p50/p99 per round and the median and the best over rounds, the p99 overhead (target <= 5 ms), this
process's CPU time per request (router and collector: the difference is what collection costs, and
CPU time is far less disturbed by other load than latency), and count in vs count stored as read
back by ``core.feedback.collected`` (target: 0 lost). The machine's other load shows in every
latency figure: compare the two columns, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
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
from embedded.serving import tune_interpreter
from embedded.serving_collect import Collector
from embedded.serving_replica import Replica
from embedded.serving_router import Router, Routes
from ml.sample_data import write_batches
from ml.train import train

WARM_UP = 100  # requests before the measured ones: connections open, the model loaded


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


class _Clients:
    """The clients, in this process or in a child (``--load``) that warms up, says so, and then
    runs the measured requests when told to, so this process's CPU is counted over those only."""

    def __init__(self, uri: str, args: argparse.Namespace) -> None:
        self.uri, self.args = uri, args
        self._child: subprocess.Popen[str] | None = None
        if not args.clients_in_process:
            self._child = subprocess.Popen(
                [sys.executable, __file__, "--load", uri, "--requests", str(args.requests),
                 "--clients", str(args.clients)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self._child.stdout is not None
            if self._child.stdout.readline().strip() != "ready":
                raise SystemExit("the client process did not start")
        else:
            _load(uri, WARM_UP, args.clients)

    def run(self) -> list[float]:
        if self._child is None:
            return _load(self.uri, self.args.requests, self.args.clients)
        out, _ = self._child.communicate("go\n")
        if self._child.returncode != 0:
            raise SystemExit(f"the client process failed (exit {self._child.returncode})")
        return [float(v) for v in json.loads(out)]


def _client_process(args: argparse.Namespace) -> None:
    _load(args.load, WARM_UP, args.clients)  # warm connections and the model
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(_load(args.load, args.requests, args.clients)), flush=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(p * len(ordered)) // 100) - 1)] if ordered else float("nan")


def _round(replica: Replica, blobs: AzureBlobStore | None, args: argparse.Namespace,
           container: str) -> tuple[float, float, float, int, int]:
    collector = (Collector(blobs, container, workspace="bench", batch=args.batch, flush_seconds=1)
                 if blobs is not None else None)
    router = Router(f"bench-{uuid.uuid4().hex[:6]}", collector=collector).start()
    router.update(Routes({"blue": 100}, {}, {"blue": replica.port}, {"blue": ("diabetes", "1")}))
    try:
        clients = _Clients(router.scoring_uri, args)
        cpu = time.process_time()
        latencies = clients.run()
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
    return _pct(latencies, 50), _pct(latencies, 99), cpu_us, args.requests + WARM_UP, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="the collector's batch size (the product's default)")
    parser.add_argument("--clients-in-process", action="store_true",
                        help="the clients' threads in this process, sharing its GIL with the router's")
    parser.add_argument("--load", metavar="URI", help=argparse.SUPPRESS)  # the client process
    args = parser.parse_args()
    if args.load:
        _client_process(args)
        return
    tune_interpreter()  # this process plays the serving control plane's
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
    where = "in the router's process" if args.clients_in_process else "in another process"
    print(f"\n{args.requests} requests x {args.rounds} rounds, {args.clients} concurrent clients ({where}), loopback "
          f"router + ml.serve, collector (batch {args.batch}) -> Azurite")
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
