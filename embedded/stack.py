"""The embedded default: Azurite and the local online endpoints' control plane (child
processes), the local Functions host, its timers, and the blob watcher that stands in for
Storage's Event Grid topic.

    python -m embedded.stack [--port 7071] [--azurite disk|memory|external] [--no-watch]

``make dev`` runs it; Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.errors import SettingsError
from core.settings import Settings
from embedded import local_settings
from embedded.azurite import Azurite
from embedded.keys import HostKeys

if TYPE_CHECKING:
    from embedded.topic import LocalTopic

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    port: int = 7071
    azurite_mode: str = "memory"  # disk | memory | external
    watch: bool = True
    timers: bool = True
    watch_interval: float = 0.5
    serve: bool = True
    azurite: Azurite | None = None
    _stoppers: list[object] = field(default_factory=list)

    def start(self) -> Stack:
        local_settings.apply(local_settings.read_values(local_settings.settings_file()))
        Settings.from_env(os.environ)  # fail fast, every problem listed, before anything starts
        if self.azurite_mode != "external":
            # On disk: the well-known ports, so UseDevelopmentStorage=true tools (az, Storage
            # Explorer) reach it. In memory (tests, demo): free ports, never a clash.
            self.azurite = (Azurite.default_ports(ROOT / ".azurite") if self.azurite_mode == "disk"
                            else Azurite.on_free_ports()).start()
            self._stoppers.append(self.azurite)
            os.environ["REACTOR_STORAGE_CONNECTION"] = self.azurite.connection_string
        # The local ML platform delivers its events to this host, wherever it listens.
        os.environ["REACTOR_LOCAL_EVENTGRID_URL"] = f"http://127.0.0.1:{self.port}"
        self._point_events_at_local_topic()
        if self.serve:
            self._start_serving()
        self._start_host()
        return self

    def _start_serving(self) -> None:
        """Online endpoints live in their own process, as Azure ML's do: a host that crashes or
        restarts leaves production serving."""
        from embedded.serving import ServingProcess

        serving = ServingProcess({}, log_path=ROOT / ".serving" / f"serving-{self.port}.log").start()
        self._stoppers.append(serving)
        os.environ["REACTOR_LOCAL_SERVING_URL"] = serving.url
        self.serving_url = serving.url

    def _start_host(self) -> None:
        import function_app
        from core.adapters.local_eventgrid import EventGridEmulator
        from embedded.host import HostServer, LocalHost
        from embedded.timers import TimerScheduler

        host = LocalHost(function_app.app, HostKeys.from_env(os.environ), topic=self._start_topic())
        self.server = HostServer(host, port=self.port).start()
        self._stoppers.append(self.server)
        self.eventgrid = EventGridEmulator(self.server.url)
        if self.timers:
            self._stoppers.append(TimerScheduler(host.timers()).start())
        if self.watch:
            self._stoppers.append(self._start_watcher())

    def _point_events_at_local_topic(self) -> None:
        """Our own events go to this host's topic when the endpoint is a loopback one, wherever it listens."""
        from embedded.topic import point_at

        endpoint = os.environ.get("REACTOR_EVENTS_TOPIC_ENDPOINT", "")
        if endpoint:
            os.environ["REACTOR_EVENTS_TOPIC_ENDPOINT"] = point_at(endpoint, self.port)

    def _start_topic(self) -> LocalTopic | None:
        from embedded.topic import LocalTopic

        topic = LocalTopic.from_env(os.environ)
        if topic is not None:
            self._stoppers.append(topic.start())
        self.topic = topic
        return topic

    def _start_watcher(self) -> object:
        from azure.storage.blob import BlobServiceClient

        from embedded.blob_events import BlobWatcher, routed_container

        service = BlobServiceClient.from_connection_string(os.environ["REACTOR_STORAGE_CONNECTION"])
        return BlobWatcher(service, self.eventgrid.publish, interval=self.watch_interval,
                           routable=lambda c: routed_container(self.eventgrid.subscriptions, c)).start()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        while self._stoppers:
            self._stoppers.pop().stop()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--azurite", choices=("disk", "memory", "external"), default="disk",
                        help="disk: under .azurite/ (kept between runs); memory; external: use the "
                        "REACTOR_STORAGE_CONNECTION already set")
    parser.add_argument("--no-watch", action="store_true", help="do not publish BlobCreated events")
    parser.add_argument("--no-timers", action="store_true")
    parser.add_argument("--no-serving", action="store_true", help="do not start the local online endpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = Stack(args.port, args.azurite, not args.no_watch, not args.no_timers, serve=not args.no_serving)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            stack.start()
        except (SettingsError, ValueError) as err:
            print(f"cannot start: {err}", file=sys.stderr)
            return 2
        storage = "Azurite on loopback" if stack.azurite else "external storage"
        print(f"mlops-reactor local host listening on {stack.url} ({storage}); Ctrl-C stops", flush=True)
        done.wait()
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
