"""The TAP device deleted under a running stack: a clear error, streams
broken, no hang (issue 5, faults)."""

import pytest
import trio

import trionet

try:
    from tests import netns
    from tests.kernel_tcp_support import KERNEL_IP, LISTENER, STACK_IP, background
except ImportError:
    import netns
    from kernel_tcp_support import KERNEL_IP, LISTENER, STACK_IP, background

pytestmark = netns.KERNEL_PEER


async def test_tap_deleted_under_a_running_stack_breaks_streams():
    name = netns.unique_name("kg")
    link = trionet.TapLink(name)
    with trio.fail_after(30):
        async with trionet.Stack() as stack:
            iface = stack.add_interface(link, f"{STACK_IP}/24")
            ns = netns.NetNamespace.create("kg")
            ns.open()
            try:
                ns.move_link(name, f"{KERNEL_IP}/24")
                async with background(ns, *ns.python(LISTENER), KERNEL_IP, 1000, 1) as listener:
                    port = (await listener.read_json(20))["port"]
                    stream = await stack.open_tcp_stream(KERNEL_IP, port)
                    await stream.send_all(b"request")
                    # The device goes while the Linux peer lives on (no FIN from it).
                    ns.ip("link", "delete", name)
                    with trio.fail_after(5):
                        with pytest.raises(trio.BrokenResourceError, match="unreachable"):
                            while True:
                                await stream.receive_some()
                    with pytest.raises(trio.BrokenResourceError):
                        await stream.send_all(b"more")
                    await stream.aclose()
            finally:
                ns.close()
            assert not iface.up
            assert stack.stats["link.broken"] == 1
            assert stack.stats["tcp.broken_by_link_down"] == 1
            assert not stack.tcp.connections
            with pytest.raises(OSError):  # no route is left
                await stack.open_tcp_stream(KERNEL_IP, port)
        assert stack.stats["drop.internal.error"] == 0
