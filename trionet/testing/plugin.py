"""The pytest plugin (entry point ``pytest11``): a ``trionet_network``
fixture giving a test a fresh seeded ``Network`` on pytest-trio's autojump
clock.

    async def test_failover(trionet_network):
        db = trionet_network.add_host("db")
        ...

    @pytest.mark.trionet_network(seed=7, latency=0.01, loss=0.01)
    async def test_under_loss(trionet_network): ...
"""

from __future__ import annotations

import pytest

from .network import Network


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "trionet_network(**options): options for the trionet_network fixture's "
                   "Network (seed, latency, loss, ...)")


@pytest.fixture
async def trionet_network(request, autojump_clock):
    """A running ``trionet.testing.Network`` (seed 0 unless the
    ``trionet_network`` marker gives one), in virtual time."""
    marker = request.node.get_closest_marker("trionet_network")
    options = dict(marker.kwargs) if marker is not None else {}
    options.setdefault("seed", 0)
    async with Network(**options) as network:
        yield network
