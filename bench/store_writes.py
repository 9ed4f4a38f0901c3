"""Table writes per second through TableStateStore (lean single writes, group commit) against one SDK call per write,
with N threads writing to one partition, as concurrent event deliveries do. Azurite on loopback.

    python bench/store_writes.py [--threads 16] [--writes 1600]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient

from core.adapters.table_store import TableStateStore
from embedded.azurite import Azurite


def run(threads: int, writes: int, insert) -> float:
    per = writes // threads

    def work(k: int) -> None:
        for i in range(per):
            insert(f"{k}-{i}-{uuid.uuid4().hex[:6]}")

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--writes", type=int, default=1600)
    args = parser.parse_args()
    azurite = Azurite.on_free_ports().start()
    try:
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        plain = service.create_table_if_not_exists("benchplain")
        store = TableStateStore.from_connection(azurite.connection_string)  # as the app builds it
        store.insert("benchgroup", "warm", "up", {})
        single = run(args.threads, args.writes, lambda row: plain.create_entity(
            {"PartitionKey": "p", "RowKey": row, "detail": "x" * 200}))
        grouped = run(args.threads, args.writes, lambda row: store.insert("benchgroup", "p", row,
                                                                           {"detail": "x" * 200}))
    finally:
        azurite.stop()
    print(f"table inserts, {args.threads} threads, one partition, {args.writes} writes")
    print(f"  one call per write : {single:7.0f} writes/s")
    print(f"  TableStateStore    : {grouped:7.0f} writes/s   ({grouped / single:.1f}x)")


if __name__ == "__main__":
    main()
