"""Shared test setup. pytest-trio runs in trio_mode (pyproject.toml): async
tests and fixtures need no marker, and nothing here replaces its runner."""

from __future__ import annotations

import os

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
