"""``reactor``: the operators' command line.

    reactor send FILE...      deliver events to the local host through the subscriptions,
                              exactly as Event Grid would (handshake events as handshakes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:7071"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


def _read_events(paths: list[str]) -> list[Any]:
    events: list[Any] = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"reactor: cannot read events from {path}: {exc}") from None
        events.extend(doc if isinstance(doc, list) else [doc])
    return events


def cmd_send(args: argparse.Namespace) -> int:
    from core.adapters.eventgrid_subscriptions import route
    from core.adapters.local_eventgrid import Delivery, EventGridEmulator

    grid = EventGridEmulator(args.url, retries=args.retries)
    events = _read_events(args.files)
    handshakes = [e for e in events if isinstance(e, dict) and e.get("eventType") == VALIDATION]
    notifications = [e for e in events if not (isinstance(e, dict) and e.get("eventType") == VALIDATION)]
    objects = [e for e in notifications if isinstance(e, dict)]
    selected = {id(e) for batch in route(grid.subscriptions, objects).values() for e in batch}
    unrouted = [e for e in notifications if id(e) not in selected]
    results: list[Delivery] = [grid.post(sub.function, handshakes, event_type="SubscriptionValidation")
                               for sub in (grid.subscriptions if handshakes else [])]
    results += grid.publish(objects)
    if args.json:
        print(json.dumps({"deliveries": [r.__dict__ for r in results], "unrouted": len(unrouted)}, indent=2))
    else:
        for r in results:
            print(f"{r.function:<24} {r.events:>5} event(s)  HTTP {r.status}  {r.body[:200]}")
        for e in unrouted:
            kind = (e.get("eventType") or e.get("type") or "no event type") if isinstance(e, dict) else "not an object"
            print(f"{'(no subscription)':<24} {1:>5} event(s)  {kind}", file=sys.stderr)
    if unrouted:
        return 2
    return 0 if all(r.ok for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reactor", description="Operate mlops-reactor.")
    parser.add_argument("--url", default=os.environ.get("REACTOR_URL", DEFAULT_URL),
                        help=f"the function app (default {DEFAULT_URL}, or $REACTOR_URL)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="deliver event files through the Event Grid subscriptions")
    send.add_argument("files", nargs="+", help="JSON files: one event or an array, either schema")
    send.add_argument("--retries", type=int, default=3)
    send.set_defaults(run=cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
