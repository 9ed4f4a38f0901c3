"""CPU per Table write in this process: the SDK (on our http.client transport) against the lean
REST path (core/adapters/table_rest.py), for the two writes every event makes: an insert
(return-no-content) and a merge with If-Match. One thread, Azurite on loopback; the entity is
an event's claim as the ledger writes it.

    python bench/table_rest.py [--writes 1000] [--rounds 3]

Prints CPU ms per call (this process only: what the host pays) and calls/s, best of the rounds,
with the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.core import MatchConditions
from azure.data.tables import TableServiceClient, UpdateMode

from core.adapters.table_rest import TableRest, encode
from core.adapters.table_transport import HttpClientTransport
from embedded.azurite import Azurite

CLAIM = {"function": "on_blob_created", "model": "diabetes", "version": "", "status": "processing", "attempt": 1,
         "correlation_id": "0" * 40, "received_at": "2026-12-02T01:00:00+00:00", "event_id": str(uuid.uuid4()),
         "lease_until": "2026-12-02T01:05:00+00:00", "event_type": "Microsoft.Storage.BlobCreated"}
FINISH = {"status": "done", "finished_at": "2026-12-02T01:00:01+00:00", "outcome": '{"action": "recorded"}',
          "action": "event.processed", "at": "2026-12-02T01:00:01+00:00", "actor": "system"}

Write = Callable[[str, str], str]  # (row, etag or "") -> etag


def measure(writes: int, insert: Write, merge: Write) -> tuple[float, float, float]:
    """(insert CPU ms, merge CPU ms, calls/s) over ``writes`` claims each finished once."""
    rows = [uuid.uuid4().hex for _ in range(writes)]
    start, wall = time.process_time(), time.perf_counter()
    etags = [insert(row, "") for row in rows]
    middle = time.process_time()
    for row, etag in zip(rows, etags, strict=True):
        merge(row, etag)
    end, elapsed = time.process_time(), time.perf_counter() - wall
    return (middle - start) * 1000 / writes, (end - middle) * 1000 / writes, 2 * writes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    azurite = Azurite.on_free_ports().start()
    try:
        transport = HttpClientTransport()
        service = TableServiceClient.from_connection_string(azurite.connection_string, transport=transport)
        table = service.create_table_if_not_exists("benchrest")
        rest = TableRest.for_service(service)
        assert rest is not None

        def sdk(row: str, etag: str) -> str:
            entity = {"PartitionKey": "sdk", "RowKey": row, **(FINISH if etag else CLAIM)}
            if etag:
                return str(table.update_entity(entity, mode=UpdateMode.MERGE, etag=etag,
                                               match_condition=MatchConditions.IfNotModified)["etag"])
            return str(table.create_entity(entity, response_preference="return-no-content")["etag"])

        def lean(row: str, etag: str) -> str:
            body = encode({"PartitionKey": "lean", "RowKey": row, **(FINISH if etag else CLAIM)})
            assert body is not None
            return rest.merge("benchrest", "lean", row, body, etag) if etag else rest.insert("benchrest", body)

        results: dict[str, list[tuple[float, float, float]]] = {"SDK": [], "lean REST": []}
        for _ in range(args.rounds):
            results["SDK"].append(measure(args.writes, sdk, sdk))
            results["lean REST"].append(measure(args.writes, lean, lean))
    finally:
        azurite.stop()
    print(f"single Table writes, one thread, Azurite, {args.writes} claims + finishes, best of {args.rounds}")
    best = {name: (min(r[0] for r in rs), min(r[1] for r in rs), max(r[2] for r in rs)) for name, rs in results.items()}
    for name, (ins, mer, rate) in best.items():
        print(f"  {name:9}  insert {ins:5.3f} ms CPU, merge {mer:5.3f} ms CPU, {rate:6.0f} calls/s")
    (si, sm, sr), (li, lm, lr) = best["SDK"], best["lean REST"]
    print(f"  lean vs SDK: insert {si / li:.1f}x less CPU, merge {sm / lm:.1f}x less CPU, {lr / sr:.2f}x calls/s")


if __name__ == "__main__":
    main()
