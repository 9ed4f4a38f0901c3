"""The local metrics source at scale: 1,000 metric rules on five endpoints answered by the real
serving control plane over HTTP (one ``POST /metrics/query`` per tick), with every router holding a
busy hour of request samples; against the 2 s per-tick budget of alert evaluation.

    python bench/local_metrics.py [--rules 1000] [--samples-per-endpoint 90000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.adapters.local_metrics import LocalSource, online_endpoint_metrics
from core.alerting.sources import MetricQuery
from embedded.serving import ControlServer
from embedded.serving_api import ControlPlane, ModelFiles
from embedded.serving_store import ServingStore
from tests.fakes import MemoryBlobStore, MemoryStateStore

ENDPOINTS = 5
NS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
EP = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/ws/onlineendpoints/"
METRICS = [("RequestsPerMinute", "average", (("statusCodeClass", "5xx"),)), ("RequestsPerMinute", "total", ()),
           ("RequestLatency_P95", "average", (("deployment", "blue"),)), ("RequestLatency_P99", "maximum", ())]


def fill(plane: ControlPlane, per_endpoint: int) -> None:
    """An hour of requests per endpoint (two deployments, 2 % errors), in the routers' own records."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    for e in range(ENDPOINTS):
        plane.ensure_endpoint(f"ep{e}", {})
        metrics = plane._routers[f"ep{e}"].metrics  # the bench backdates samples, which requests cannot
        for i in range(per_endpoint):
            at = now - timedelta(seconds=3600 * (1 - i / per_endpoint))
            metrics.record("blue" if i % 10 else "green", 500 if rng.random() < 0.02 else 200,
                           rng.uniform(2, 40), at)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--samples-per-endpoint", type=int, default=90_000)  # 25 requests/s for an hour
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(ServingStore(MemoryStateStore(), "b"), ModelFiles(MemoryBlobStore(), "b-models"),
                             lambda events: [], Path(tmp))
        server = ControlServer(plane)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            fill(plane, args.samples_per_endpoint)
            source = LocalSource(online_endpoint_metrics(server.url))
            queries = [MetricQuery((f"{EP}ep{i % ENDPOINTS}",), NS, m, agg, window, dims)
                       for i in range(args.rules)
                       for m, agg, dims in [METRICS[i % len(METRICS)]] for window in [(60, 300, 900)[i % 3]]]
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                values = source.query_metrics(queries, datetime.now(UTC))
                timings.append(time.perf_counter() - started)
            answered = sum(1 for v in values for x in v.values() if x is not None)
            best = min(timings)
            print(f"{args.rules} metric rules on {ENDPOINTS} endpoints x {args.samples_per_endpoint} samples: "
                  f"{best:.3f} s per tick (best of 3; {', '.join(f'{t:.3f}' for t in timings)}), "
                  f"{answered} values, target <= 2 s ({2 / best:.1f}x under)")
        finally:
            server.shutdown()
            server.server_close()
            plane.close()


if __name__ == "__main__":
    main()
