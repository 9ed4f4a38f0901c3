"""``make demo``: the loop on one machine, narrated.

Starts Azurite (in memory) and the local host, uploads a CSV into the data container,
and follows the BlobCreated event from the blob watcher through the subscription to
``on_blob_created`` and into the ledger; then delivers the same event again to show that
it is recorded once. Stops everything it started.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from core.bootstrap import Services, build
from core.settings import Settings
from embedded.stack import Stack

T0 = time.monotonic()


def say(step: str, detail: str = "") -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {step}{'  ' + detail if detail else ''}", flush=True)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"demo: gave up waiting for {what}")


def sample_csv(rows: int = 20) -> bytes:
    header = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,y"
    lines = [header] + [",".join(f"{(i * 7 + j) % 13 / 100:.3f}" for j in range(10)) + f",{100 + i}"
                        for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def run() -> None:
    stack = Stack(port=int(os.environ.get("REACTOR_DEMO_PORT", "7072")), azurite_mode="memory")
    say("starting Azurite (in memory) and the local Functions host")
    stack.start()
    try:
        say("host ready", stack.url)
        services = build(Settings.from_env(os.environ))
        from azure.storage.blob import BlobServiceClient

        blobs = BlobServiceClient.from_connection_string(os.environ["REACTOR_STORAGE_CONNECTION"])
        container = blobs.get_container_client(services.settings.data_container)
        container.create_container()
        name = f"incoming/diabetes-{int(time.time())}.csv"
        container.upload_blob(name, sample_csv(), overwrite=True)
        say("uploaded a CSV with the storage SDK", f"{services.settings.data_container}/{name}")
        record = wait_for("on_blob_created to record the event",
                          lambda: [r for r in services.ledger.audit_records({"function": "on_blob_created"})
                                   if r["action"] == "event.processed"])
        first = record[0]
        say("BlobCreated arrived at on_blob_created and was recorded",
            f"event {first['event_id']} correlation {first['correlation_id'][:12]}")
        say("delivering the same event again (Event Grid is at-least-once)")
        from embedded.blob_events import BlobWatcher

        BlobWatcher(blobs, stack.eventgrid.publish).poll()  # a fresh watcher re-publishes: same event id
        trail = wait_for("the duplicate to be seen", lambda: _trail_if_complete(services, first["event_id"]))
        for row in trail:
            say(f"  audit: {row['action']:<16}", f"{row['function']} event {row['event_id']}")
        processed = sum(1 for r in trail if r["action"] == "event.processed")
        say(f"recorded once: {processed} processed, {len(trail) - processed} duplicate(s) skipped")
    finally:
        stack.stop()
        say("stopped the host and Azurite")


def _trail_if_complete(services: Services, event_id: str) -> list[dict[str, Any]]:
    trail = services.ledger.audit_records({"event_id": event_id})
    return trail if len(trail) >= 2 else []


def main() -> int:
    try:
        run()
    except (TimeoutError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
