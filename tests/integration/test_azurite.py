"""Starting Azurite on ports picked as free, when another process takes one of them first."""

from __future__ import annotations

import socket

import pytest

from embedded.azurite import Azurite, free_port

pytestmark = pytest.mark.integration


def test_a_port_taken_after_it_was_picked_is_replaced_by_a_new_pick() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Azurite(free_port(), port, free_port(), free_ports=True).start()
        try:
            assert server.queue_port != port
            with socket.create_connection(("127.0.0.1", server.table_port), timeout=5):
                pass
        finally:
            server.stop()


def test_fixed_ports_that_are_taken_are_an_error_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"EADDRINUSE.*{port}"):
            Azurite(free_port(), port, free_port()).start()
