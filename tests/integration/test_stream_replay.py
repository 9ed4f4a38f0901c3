"""The fast version of ``make soak``'s stream replay (tests/soak/soak_replay.py): 300 events of all
six handled types, three times shuffled by three senders against once in order -> the same jobs,
releases, deployments and notifications, each event processed once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.soak.soak_replay import replay_and_compare

pytestmark = pytest.mark.integration


def test_a_short_stream_replayed_three_times_shuffled_ends_as_one_ordered_delivery(azurite: Any) -> None:
    replay_and_compare(azurite, 300, seed=7)  # asserts each comparison, naming what differs
