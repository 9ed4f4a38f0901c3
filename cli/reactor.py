"""``reactor``: the operators' command line.

    reactor send FILE...            deliver events to the local host through the subscriptions,
                                    exactly as Event Grid would (handshake events as handshakes)
    reactor retrain MODEL --reason  ask for a retrain now (no window, no threshold, no cooldown)
    reactor status                  per model: champion, versions, retraining state; production
                                    version, release in flight, production traffic split, firing
                                    alerts; dead-letter and notification backlogs
    reactor releases [--model M --state S]
                                    releases, newest first: state, canary step and traffic, reason
    reactor release ID              one release (ID is MODEL:VERSION) with its step timeline
    reactor approve ID [--comment]  approve a release awaiting approval (approver role)
    reactor reject ID --reason      reject a release awaiting approval (approver role)
    reactor rollback MODEL --reason shift the model's production traffic back to the previous
                                    deployment (operator or approver role)
    reactor audit [--model M --version V --event-id E --correlation-id C --since ISO --until ISO]
                                    the audit trail (with --version: that version's lineage), oldest first
    reactor deadletters             dead-lettered events
    reactor replay ID               replay a dead letter (ID is function/key; needs the operator role)
    reactor silence add|list|expire alert silences (add and expire need the operator role)

Tables in a terminal, ``--json`` for scripts; any refusal or failure is printed on stderr with
the field at fault and exits non-zero (1; 2 for arguments rejected before any request).

A deployed app is reached with ``--url`` and a function key in ``$REACTOR_KEY``; against the
local host the key defaults to the first of ``LOCAL_FUNCTION_KEYS`` in the local settings.
With App Service authentication on, roles come from an Entra ID token in ``$REACTOR_TOKEN``
(``az account get-access-token --resource api://<client id> --query accessToken -o tsv``), sent
as ``Authorization: Bearer`` beside the key (the Functions host still checks the key).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.admin import tables

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


def _headers() -> dict[str, str]:
    """The function key, and with Easy Auth an Entra ID token ($REACTOR_TOKEN) that carries the roles."""
    headers = {"x-functions-key": _key()}
    token = os.environ.get("REACTOR_TOKEN", "").strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _request(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None) -> tuple[int, Any]:
    """(exit code, payload): 0 and the JSON answer, or 1 with the problem already printed."""
    import requests

    try:
        resp = requests.request(method, f"{args.url.rstrip('/')}/api/{path}", json=body, params=params, timeout=60,
                                headers=_headers())
    except requests.RequestException as exc:
        print(f"reactor: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1, None
    try:
        payload = resp.json() if resp.headers.get("Content-Type", "").endswith("json") else {"body": resp.text}
    except ValueError:
        payload = {"body": resp.text}
    if resp.status_code >= 400:
        where = f" (field: {payload['field']})" if payload.get("field") else ""
        print(f"reactor: {payload.get('title', resp.status_code)}: {payload.get('detail', '')}{where}",
              file=sys.stderr)
        return 1, None
    return 0, payload


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    code, payload = _request(args, method, path, body)
    if code:
        return code
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(f"{k:<16} {v}" for k, v in payload.items()))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    return _call(args, "POST", "retrain", {"model": args.model, "reason": args.reason})


def _show(args: argparse.Namespace, method: str, path: str, render: Callable[[Any], str],
          params: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> int:
    code, payload = _request(args, method, path, body, params)
    if code:
        return code
    print(json.dumps(payload, indent=2) if args.json else render(payload))
    return 0


def _table(rows: Callable[[Any], list[list[str]]]) -> Callable[[Any], str]:
    return lambda payload: tables.render(rows(payload))


def cmd_status(args: argparse.Namespace) -> int:
    return _show(args, "GET", "status", tables.status_text)


def cmd_audit(args: argparse.Namespace) -> int:
    names = {"model": "model", "version": "version", "event_id": "event_id", "correlation_id": "correlation_id",
             "since": "from", "until": "to", "limit": "limit"}
    params = {q: str(getattr(args, a)) for a, q in names.items() if getattr(args, a) not in (None, "")}
    return _show(args, "GET", "audit", _table(tables.audit_rows), params)


def cmd_deadletters(args: argparse.Namespace) -> int:
    return _show(args, "GET", "deadletters", _table(tables.letter_rows))


def cmd_replay(args: argparse.Namespace) -> int:
    function, sep, key = args.id.partition("/")
    if not sep or not function or not key or "/" in key:
        print(f"reactor: {args.id!r} is not a dead letter id (function/key, as `reactor deadletters` lists)",
              file=sys.stderr)
        return 2
    return _show(args, "POST", f"deadletters/{_segment(function)}/{_segment(key)}/replay", _table(tables.replay_rows))


def cmd_releases(args: argparse.Namespace) -> int:
    # The server checks --state against its states and names the field: one list, not two to keep in step.
    params = {k: v for k, v in (("model", args.model), ("state", args.state)) if v}
    return _show(args, "GET", "releases", _table(tables.release_rows), params)


def _segment(value: str) -> str:
    """One path segment, every reserved character percent-encoded (the host decodes it before routing).
    A `/` becomes %2F, which Azure still treats as a separator: ids never contain one."""
    return quote(value, safe="")


def _release_path(rid: str) -> str | None:
    """``releases/MODEL:VERSION``, or None (reported) when ``rid`` is not a release id."""
    model, sep, version = rid.rpartition(":")
    if not sep or not model or not version:
        print(f"reactor: {rid!r} is not a release id (MODEL:VERSION, as `reactor releases` lists)", file=sys.stderr)
        return None
    return f"releases/{_segment(rid)}"


def cmd_release(args: argparse.Namespace) -> int:
    path = _release_path(args.id)
    return 2 if path is None else _show(args, "GET", path, tables.release_text)


def cmd_approve(args: argparse.Namespace) -> int:
    path = _release_path(args.id)
    body = {"comment": args.comment} if args.comment else {}
    return 2 if path is None else _show(args, "POST", f"{path}/approve", tables.release_text, body=body)


def cmd_reject(args: argparse.Namespace) -> int:
    path = _release_path(args.id)
    body = {"reason": args.reason}
    return 2 if path is None else _show(args, "POST", f"{path}/reject", tables.release_text, body=body)


def cmd_rollback(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"models/{_segment(args.model)}/rollback", {"reason": args.reason})


def cmd_silence(args: argparse.Namespace) -> int:
    if args.action == "add":
        body = {"matchers": args.matchers, "duration": args.duration, "comment": args.comment}
        return _call(args, "POST", "silences", body)
    if args.action == "expire":
        return _call(args, "DELETE", f"silences/{_segment(args.id)}")
    params = {"expired": "true"} if args.expired else None
    return _show(args, "GET", "silences", _table(tables.silence_rows), params)


def _admin_commands(sub: Any) -> None:
    sub.add_parser("status", help="models: retraining, production, releases, traffic, alerts; backlogs"
                   ).set_defaults(run=cmd_status)
    audit = sub.add_parser("audit", help="the audit trail; with --version, that version's lineage")
    for name in ("model", "version", "event-id", "correlation-id"):
        audit.add_argument(f"--{name}", default="")
    audit.add_argument("--since", default="", help="ISO 8601 time, e.g. 2024-05-01T12:00:00Z")
    audit.add_argument("--until", default="", help="ISO 8601 time")
    audit.add_argument("--limit", type=int, default=None, help="most recent N records (default 100)")
    audit.set_defaults(run=cmd_audit)
    sub.add_parser("deadletters", help="dead-lettered events").set_defaults(run=cmd_deadletters)
    replay = sub.add_parser("replay", help="replay a dead letter (operator role)")
    replay.add_argument("id", help="function/key, as `reactor deadletters` lists it")
    replay.set_defaults(run=cmd_replay)
    silence = sub.add_parser("silence", help="alert silences: add, list, expire (add/expire: operator role)")
    actions = silence.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="silence alerts whose labels match")
    add.add_argument("matchers", nargs="+", help="label=value, label!=value, label=~regex, label!~regex")
    add.add_argument("--duration", default="2h", help="seconds or text such as 2h (default 2h)")
    add.add_argument("--comment", required=True, help="why: shown to whoever sees the silence")
    listing = actions.add_parser("list", help="silences in force (or all with --expired)")
    listing.add_argument("--expired", action="store_true")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    silence.set_defaults(run=cmd_silence)


def _release_commands(sub: Any) -> None:
    releases = sub.add_parser("releases", help="releases, newest first")
    releases.add_argument("--model", default="", help="only this model's releases")
    releases.add_argument("--state", default="", help="only releases in this state, e.g. awaiting_approval")
    releases.set_defaults(run=cmd_releases)
    release = sub.add_parser("release", help="one release with its step timeline")
    release.add_argument("id", help="MODEL:VERSION, as `reactor releases` lists it")
    release.set_defaults(run=cmd_release)
    approve = sub.add_parser("approve", help="approve a release awaiting approval (approver role)")
    approve.add_argument("id", help="MODEL:VERSION")
    approve.add_argument("--comment", default="", help="recorded on the release's timeline and in the audit trail")
    approve.set_defaults(run=cmd_approve)
    reject = sub.add_parser("reject", help="reject a release awaiting approval (approver role)")
    reject.add_argument("id", help="MODEL:VERSION")
    reject.add_argument("--reason", required=True, help="why: recorded on the release")
    reject.set_defaults(run=cmd_reject)
    rollback = sub.add_parser("rollback", help="production traffic back to the previous deployment "
                              "(operator or approver role)")
    rollback.add_argument("model")
    rollback.add_argument("--reason", required=True, help="why: recorded on the release and in the audit trail")
    rollback.set_defaults(run=cmd_rollback)


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
    _admin_commands(sub)
    _release_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
