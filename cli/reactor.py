"""``reactor``: the operators' command line.

    reactor send FILE...            deliver events to the local host through the subscriptions,
                                    exactly as Event Grid would (handshake events as handshakes)
    reactor retrain MODEL --reason  ask for a retrain now (no window, no threshold, no cooldown)

A deployed app is reached with ``--url`` and a function key in ``$REACTOR_KEY``; against the
local host the key defaults to the first of ``LOCAL_FUNCTION_KEYS`` in the local settings.
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


def _key() -> str:
    key = os.environ.get("REACTOR_KEY", "")
    if key:
        return key
    from embedded.local_settings import read_values, settings_file

    pairs = read_values(settings_file()).get("LOCAL_FUNCTION_KEYS", "")
    return pairs.split(",")[0].partition(":")[2].strip()


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    import requests

    try:
        resp = requests.request(method, f"{args.url.rstrip('/')}/api/{path}", json=body, timeout=60,
                                headers={"x-functions-key": _key()})
    except requests.RequestException as exc:
        print(f"reactor: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    payload = resp.json() if resp.headers.get("Content-Type", "").endswith("json") else {"body": resp.text}
    if resp.status_code >= 400:
        where = f" (field: {payload['field']})" if payload.get("field") else ""
        print(f"reactor: {payload.get('title', resp.status_code)}: {payload.get('detail', '')}{where}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(f"{k:<16} {v}" for k, v in payload.items()))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    return _call(args, "POST", "retrain", {"model": args.model, "reason": args.reason})


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
    retrain = sub.add_parser("retrain", help="retrain a model now")
    retrain.add_argument("model")
    retrain.add_argument("--reason", default="requested from the command line")
    retrain.set_defaults(run=cmd_retrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
