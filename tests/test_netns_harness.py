"""The kernel-peer harness itself: namespaces, TAP hand-over, kernel_ping,
scripts/setup_tap.sh. Real clock; everything lives in namespaces made here."""

from __future__ import annotations

import os
import pathlib
import shutil
import struct
import subprocess

import pytest
import trio

try:
    from . import netns
except ImportError:
    import netns

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETUP_TAP = ROOT / "scripts" / "setup_tap.sh"


def _root_has_link(ifname: str) -> bool:
    return subprocess.run(
        ["ip", "link", "show", "dev", ifname], capture_output=True
    ).returncode == 0


def _open_tap(name: str):
    pytun = pytest.importorskip("pytun")
    tap = pytun.TunTapDevice(name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    os.set_blocking(tap.fileno(), False)
    return tap


def _arp_request_for(frame: bytes) -> tuple[str, str] | None:
    """(sender IP, target IP) if ``frame`` is an Ethernet ARP request."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 1):
        return None
    sender = ".".join(map(str, frame[28:32]))
    target = ".".join(map(str, frame[38:42]))
    return sender, target


# -- pure helpers --------------------------------------------------------------


def test_unique_name_is_short_and_unique():
    names = {netns.unique_name("tap") for _ in range(100)}
    assert len(names) == 100
    assert all(len(n) <= netns.IFNAME_MAX and n.startswith("tap") for n in names)
    assert str(os.getpid()) in next(iter(names))
    with pytest.raises(ValueError, match="shorter prefix"):
        netns.unique_name("averylongprefix")


def test_namespace_names_carry_the_run_prefix():
    ns = netns.NetNamespace.create("xy")
    assert ns.name.startswith(netns.RUN_PREFIX + "xy")
    assert str(os.getpid()) in netns.RUN_PREFIX


def test_skip_reason_matches_environment():
    reason = netns.kernel_peer_skip_reason()
    if os.geteuid() != 0:
        assert reason is not None and "root" in reason
    elif reason is None:
        assert os.path.exists("/dev/net/tun") and shutil.which("ip")


def test_parse_iputils_output():
    out = (
        "PING 10.1.0.2 (10.1.0.2) 4000(4028) bytes of data.\n"
        "4008 bytes from 10.1.0.2: icmp_seq=1 ttl=64 time=0.250 ms\n"
        "4008 bytes from 10.1.0.2: icmp_seq=2 ttl=64 time=1.50 ms\n\n"
        "--- 10.1.0.2 ping statistics ---\n"
        "3 packets transmitted, 2 received, 33.3333% packet loss, time 401ms\n"
    )
    result = netns._parse_iputils(out)
    assert (result.sent, result.received) == (3, 2)
    assert result.rtts == pytest.approx((0.00025, 0.0015))
    assert result.loss == pytest.approx(1 / 3)


def test_setup_tap_usage_errors():
    for args in ([], ["tap0"], ["tap0", "10.0.0.1/24", "--bogus"],
                 ["tap0", "300.0.0.1/24"], ["tap0", "10.0.0.1/33"],
                 ["tap0", "10.0.0.1/24", "fd00::1/129"], ["tap0", "10.0.0.1/24", "fd00::1"],
                 ["much-too-long-name", "10.0.0.1/24"],
                 ["tap0", "--delete", "--user", "x"], ["tap0", "10.0.0.1/24", "--netns"]):
        proc = subprocess.run(["bash", SETUP_TAP, *args], capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "usage:" in proc.stderr, args
    proc = subprocess.run(["bash", SETUP_TAP, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--delete" in proc.stdout


def test_setup_tap_refuses_non_root():
    if os.geteuid() != 0:
        proc = subprocess.run(["bash", SETUP_TAP, "tap0", "10.0.0.1/24"],
                              capture_output=True, text=True)
    else:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to drop root")
        # The checkout (and pytest's tmp_path) may sit where the unprivileged
        # user cannot go (a home directory with mode 0700): hand it a copy
        # in a directory of its own that it can read.
        import tempfile

        with tempfile.TemporaryDirectory() as where:
            os.chmod(where, 0o755)
            script = pathlib.Path(where) / "setup_tap.sh"
            shutil.copyfile(SETUP_TAP, script)
            script.chmod(0o755)
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", "bash", str(script), "tap0", "10.0.0.1/24"],
                                  capture_output=True, text=True, cwd=where)
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to get past the root check")
def test_setup_tap_reports_missing_iproute2(tmp_path):
    for tool in ("bash", "id", "awk", "grep", "basename"):
        path = shutil.which(tool)
        if path is None:
            pytest.skip(f"needs {tool}")
        (tmp_path / tool).symlink_to(path)
    proc = subprocess.run(["bash", SETUP_TAP, "tap0", "10.0.0.1/24"],
                          capture_output=True, text=True,
                          env={"PATH": str(tmp_path)}, executable=shutil.which("bash"))
    assert proc.returncode == 1
    assert "iproute2" in proc.stderr


# -- with the kernel as peer --------------------------------------------------


@pytest.mark.kernel
@netns.requires_kernel_peer
async def test_tap_moved_into_namespace_sees_kernel_arp():
    tap_name = netns.unique_name("tt")
    async with netns.NetNamespace.create() as ns:
        tap = _open_tap(tap_name)
        fd = tap.fileno()
        try:
            ns.move_link(tap.name, "10.98.0.1/24")
            assert "10.98.0.1/24" in ns.ip("addr", "show", "dev", tap.name).stdout
            assert not _root_has_link(tap.name)
            seen = []
            async with trio.open_nursery() as nursery:
                # Nothing answers: the kernel ARPs for 10.98.0.2 through the TAP.
                nursery.start_soon(lambda: netns.kernel_ping(ns, "10.98.0.2", count=1))
                with trio.fail_after(5):
                    while True:
                        await trio.lowlevel.wait_readable(fd)
                        try:
                            frame = os.read(fd, 65536)
                        except BlockingIOError:
                            continue
                        seen.append(frame)
                        if _arp_request_for(frame) == ("10.98.0.1", "10.98.0.2"):
                            break
                nursery.cancel_scope.cancel()
            # IPv6 is off on the moved link: nothing but IPv4/ARP came out.
            assert all(f[12:14] in (b"\x08\x06", b"\x08\x00") for f in seen)
        finally:
            trio.lowlevel.notify_closing(fd)
            tap.close()
    assert ns.name not in netns.list_namespaces()
    assert not _root_has_link(tap_name)


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_namespace_cleans_up_processes_and_itself_on_error():
    with pytest.raises(RuntimeError, match="boom"):
        with netns.NetNamespace.create("er") as ns:
            assert ns.name in netns.list_namespaces()
            assert "UP" in ns.ip("link", "show", "dev", "lo").stdout
            proc = ns.popen(*ns.python("import time; time.sleep(60)"))
            # A process not started through popen is killed too.
            stray = ns.popen("sh", "-c", "sleep 60 & wait")
            raise RuntimeError("boom")
    assert proc.poll() is not None and stray.poll() is not None
    assert ns.name not in netns.list_namespaces()


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_run_reports_stderr_on_failure():
    with netns.NetNamespace.create() as ns:
        out = ns.run(*ns.python("print('hi')"))
        assert out.stdout == "hi\n"
        with pytest.raises(netns.NetnsCommandError, match="oops"):
            ns.run(*ns.python("import sys; sys.exit('oops')"))


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_safety_net_deletes_only_this_runs_namespaces():
    ns = netns.NetNamespace.create("sn").open()  # "forgotten" by a test
    try:
        assert netns.cleanup_run_namespaces(netns.RUN_PREFIX + "sn") == [ns.name]
        assert ns.name not in netns.list_namespaces()
        assert netns.cleanup_run_namespaces("") == []  # never "everything"
    finally:
        ns.close()


@pytest.mark.kernel
@netns.requires_kernel_peer
@pytest.mark.parametrize("use_ping", [False, True], ids=["raw-socket", "ping-binary"])
@pytest.mark.parametrize("size", [56, 4000])
async def test_kernel_ping_between_namespaces(use_ping, size):
    if use_ping and shutil.which("ping") is None:
        pytest.skip("no ping binary; the raw-socket fallback is tested instead")
    with netns.NetNamespace.create("pa") as a, netns.NetNamespace.create("pb") as b:
        netns.link_namespaces(a, "10.98.1.1/24", b, "10.98.1.2/24")
        with trio.fail_after(20):
            result = await netns.kernel_ping(a, "10.98.1.2", count=3, size=size,
                                             interval=0.05, use_ping=use_ping)
        assert (result.sent, result.received) == (3, 3), result
        assert len(result.rtts) == 3 and all(0 < r < 5 for r in result.rtts)
        assert result.tool == ("ping" if use_ping else "python")
        with trio.fail_after(20):
            lost = await netns.kernel_ping(a, "10.98.1.99", count=2, interval=0.05,
                                           timeout=0.5, use_ping=use_ping)
        assert (lost.sent, lost.received, lost.loss) == (2, 0, 1.0)


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_setup_tap_script_inside_namespace():
    tap = netns.unique_name("st")
    with netns.NetNamespace.create("st") as ns:
        env = {**os.environ, "SUDO_USER": "nobody"}
        proc = subprocess.run(["bash", SETUP_TAP, tap, "10.97.0.1/24", "fd00:97::1/64",
                               "--netns", ns.name], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"+ ip -n {ns.name} tuntap add dev {tap} mode tap user nobody" in proc.stdout
        details = ns.ip("-d", "link", "show", "dev", tap).stdout
        assert "tun type tap" in details and "persist on" in details
        assert "user nobody" in details or "user 65534" in details
        assert ",UP" in details
        addresses = ns.ip("addr", "show", "dev", tap).stdout
        assert "10.97.0.1/24" in addresses and "fd00:97::1/64" in addresses  # both families
        assert not _root_has_link(tap)

        again = subprocess.run(["bash", SETUP_TAP, tap, "10.97.0.1/24", "--netns", ns.name],
                               capture_output=True, text=True)
        assert again.returncode == 1 and "already exists" in again.stderr

        not_tap = subprocess.run(["bash", SETUP_TAP, "lo", "--delete", "--netns", ns.name],
                                 capture_output=True, text=True)
        assert not_tap.returncode == 1 and "not a TAP" in not_tap.stderr

        proc = subprocess.run(["bash", SETUP_TAP, tap, "--delete", "--netns", ns.name],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"tuntap del dev {tap} mode tap" in proc.stdout
        assert ns.ip("link", "show", "dev", tap, check=False).returncode != 0


@pytest.mark.kernel
@netns.requires_kernel_peer
def test_setup_tap_script_creates_missing_namespace():
    name = netns.NetNamespace.create("sc").name  # run prefix: safety net covers it
    try:
        tap = netns.unique_name("sc")
        proc = subprocess.run(["bash", SETUP_TAP, tap, "10.97.1.1/24", "--netns", name,
                               "--user", "root"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"+ ip netns add {name}" in proc.stdout
        assert name in netns.list_namespaces()
        assert not _root_has_link(tap)
        proc = subprocess.run(["bash", SETUP_TAP, tap, "--delete", "--netns", name],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    finally:
        netns.cleanup_run_namespaces(name)
    assert name not in netns.list_namespaces()
