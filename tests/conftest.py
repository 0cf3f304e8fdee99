"""Shared test setup. pytest-trio runs in trio_mode (pyproject.toml): async
tests and fixtures need no marker, and nothing here replaces its runner."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest

try:  # tests/ is not a package; also works if it becomes one
    from . import netns
except ImportError:
    import netns


# -- hypothesis profiles -----------------------------------------------------
# "ci" when HYPOTHESIS_PROFILE=ci or CI is set, "dev" otherwise. No deadline:
# timing belongs in benchmarks, not in tests (DEVELOPERS.md).
try:
    from hypothesis import settings
except ImportError:  # hypothesis is in the [test] extra; tolerate its absence
    settings = None

if settings is not None:
    settings.register_profile("ci", deadline=None, max_examples=50)
    settings.register_profile("dev", deadline=None)
    settings.load_profile(
        os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    )


# -- kernel-peer tests -------------------------------------------------------


def pytest_report_header(config):
    import trio

    reason = netns.kernel_peer_skip_reason()
    return [
        f"trio {trio.__version__}",
        "kernel peer: available" if reason is None else f"kernel peer: skipped ({reason})",
    ]


def pytest_collection_modifyitems(config, items):
    """Every test marked ``kernel`` is skipped, with the reason, where the
    kernel peer is not available (not root, no /dev/net/tun, no ip)."""
    reason = netns.kernel_peer_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("kernel") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _netns_safety_net():
    """At session end, delete namespaces this run left behind (a killed or
    interrupted test); only names starting with this run's prefix."""
    yield
    left = netns.cleanup_run_namespaces(netns.RUN_PREFIX)
    if left:
        import warnings

        warnings.warn(f"deleted leftover network namespaces: {', '.join(left)}")


# -- every stack a test makes ends without an internal error ----------------------


@pytest.fixture(autouse=True)
def no_internal_errors(monkeypatch):
    """Every Stack made during the test must end with drop.internal.error == 0:
    that counter means a bug (the stack caught an exception it did not
    expect). Yields the stacks made, in order."""
    import trionet.api.stack

    stacks = []
    original = trionet.api.stack.Stack.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        stacks.append(self)

    monkeypatch.setattr(trionet.api.stack.Stack, "__init__", init)
    yield stacks
    for stack in stacks:
        assert stack.stats["drop.internal.error"] == 0, stack.stats.drops()


# -- shared topologies over virtual_cable ---------------------------------------------


@attrs.define
class TwoStacks:
    """Two running stacks on one cable: ``client`` 10.0.0.1 on end ``a``,
    ``server`` 10.0.0.2 on end ``b``. Unpacks as (client, server, a, b)."""
    client: Any
    server: Any
    a: Any
    b: Any

    def __iter__(self):
        return iter((self.client, self.server, self.a, self.b))


@asynccontextmanager
async def open_two_stacks(*, latency: float = 0.005, seed=1, client_seed: int = 1,
                          server_seed: int = 2, client_mac=None, server_mac=None,
                          client_kwargs=None, server_kwargs=None, **impairments):
    """Two stacks on a ``virtual_cable(latency=, seed=, **impairments)``,
    entered; the yielded ``TwoStacks`` is valid inside the block."""
    import trionet

    a, b = trionet.virtual_cable(latency=latency, seed=seed, **impairments)
    async with trionet.Stack(seed=client_seed, **(client_kwargs or {})) as client, \
            trionet.Stack(seed=server_seed, **(server_kwargs or {})) as server:
        client.add_interface(a, "10.0.0.1/24", mac=client_mac)
        server.add_interface(b, "10.0.0.2/24", mac=server_mac)
        yield TwoStacks(client, server, a, b)


@pytest.fixture
def two_stacks():
    """The ``open_two_stacks`` factory: ``async with two_stacks(latency=0.01)
    as net:``."""
    return open_two_stacks


@attrs.define
class RoutedStacks:
    """A (10.0.1.2) -- router R (10.0.1.1 | 10.0.2.1, forwarding) -- B
    (10.0.2.2), not yet entered: ``async with net.a, net.router, net.b:``.
    ``a`` may be a hand-driven host instead of a stack (see
    ``make_routed_stacks``)."""
    a: Any
    router: Any
    b: Any
    cable_a: tuple
    cable_b: tuple

    def __iter__(self):
        return iter((self.a, self.router, self.b))


def make_routed_stacks(*, mtu_b: int = 1500, latency: float = 0.001, router_mac=None,
                       make_a=None) -> RoutedStacks:
    """Two cables with a forwarding stack between them (seeds fixed, so a
    run replays). ``make_a(cable_end)`` builds the left host instead of a
    stack."""
    import trionet

    a_end, ra_end = trionet.virtual_cable(seed=21, latency=latency)
    rb_end, b_end = trionet.virtual_cable(seed=22, latency=latency, mtu=mtu_b)
    router = trionet.Stack(forwarding=True, seed=3)
    router.add_interface(ra_end, "10.0.1.1/24", mac=router_mac)
    router.add_interface(rb_end, "10.0.2.1/24")
    b = trionet.Stack(seed=4)
    b.add_interface(b_end, "10.0.2.2/24", gateway="10.0.2.1")
    if make_a is not None:
        a = make_a(a_end)
    else:
        a = trionet.Stack(seed=5)
        a.add_interface(a_end, "10.0.1.2/24", gateway="10.0.1.1")
    return RoutedStacks(a, router, b, (a_end, ra_end), (rb_end, b_end))


@pytest.fixture
def routed_stacks():
    """The ``make_routed_stacks`` factory."""
    return make_routed_stacks
