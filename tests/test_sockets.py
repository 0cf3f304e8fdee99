"""Unmodified Trio, anyio and httpx code over trionet: ``trionet.use_stack``
makes a stack Trio's socket layer (trio.socket.set_custom_socket_factory /
set_custom_hostname_resolver) for the tasks inside it; outside it, the
kernel's, in the same trio.run."""

from __future__ import annotations

import errno
import socket as stdlib
import ssl

import pytest
import trio
import trio.testing

import trionet

SERVER_NAME = "server.test"


async def serve_echo(stream: trio.abc.Stream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


def name_server(net) -> None:
    net.client.hosts[SERVER_NAME] = ["10.0.0.2"]
    net.server.hosts[SERVER_NAME] = ["10.0.0.2"]


# --- Trio's own stream checks -----------------------------------------------------------


class SocketPairs:
    """trio.SocketStream pairs whose sockets are trionet's: the listening
    socket made under use_stack(server), the connecting one under
    use_stack(client)."""

    def __init__(self, net):
        self.net = net

    async def pair(self):
        with trionet.use_stack(self.net.server):
            listener = trio.socket.socket()
            await listener.bind(("10.0.0.2", 0))
            listener.listen(1)
        with trionet.use_stack(self.net.client):
            client = trio.socket.socket()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.connect, listener.getsockname())
                server, _ = await listener.accept()
        finally:
            listener.close()
        return trio.SocketStream(client), trio.SocketStream(server)

    async def clogged_pair(self):
        """Both directions clogged: small buffers, a zero window, everything
        sent acknowledged (decided by state, not by a timeout)."""
        defaults = trionet.TcpConfig()
        for stack in (self.net.client, self.net.server):
            stack.tcp.config.send_buffer = stack.tcp.config.receive_buffer = 4096
            stack.tcp.config.window_scale = False
        try:
            client, server = await self.pair()
        finally:
            for stack in (self.net.client, self.net.server):
                stack.tcp.config.send_buffer = defaults.send_buffer
                stack.tcp.config.receive_buffer = defaults.receive_buffer
                stack.tcp.config.window_scale = defaults.window_scale
        for stream in (client, server):
            connection = self.connection_of(stream)
            with trio.fail_after(60):
                while not (connection.send_space == 0 and connection.snd_wnd == 0
                           and connection.bytes_in_flight == 0):
                    with trio.move_on_after(0.05):
                        await stream.send_all(b"x" * 512)
        return client, server

    def connection_of(self, stream: trio.SocketStream):
        local, remote = stream.socket.getsockname(), stream.socket.getpeername()
        for stack in (self.net.client, self.net.server):
            for key, sock in stack.tcp.connections.items():
                if (str(key[0]), key[1], str(key[2]), key[3]) == (*local, *remote):
                    return sock.machine
        raise LookupError("no such connection")


async def test_trio_socket_stream_conformance(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        pairs = SocketPairs(net)
        await trio.testing.check_half_closeable_stream(pairs.pair, pairs.clogged_pair)


async def test_trio_socket_stream_conformance_real_clock(two_stacks):
    async with two_stacks(latency=0.0) as net:
        pairs = SocketPairs(net)
        await trio.testing.check_half_closeable_stream(pairs.pair, pairs.clogged_pair)


# --- Trio's high-level API --------------------------------------------------------------


async def test_serve_tcp_and_open_tcp_stream_by_name(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        name_server(net)
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                listeners = await nursery.start(trio.serve_tcp, serve_echo, 8007)
            # One listener per family, as on a dual-stack kernel (the IPv6
            # one with IPV6_V6ONLY, as trio sets it).
            assert sorted(sock.socket.getsockname() for sock in listeners) == [
                ("0.0.0.0", 8007), ("::", 8007, 0, 0)]
            assert listeners[0].socket.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 1
            replies = {}

            async def client(i: int) -> None:
                with trionet.use_stack(net.client):
                    stream = await trio.open_tcp_stream(SERVER_NAME, 8007)
                    async with stream:
                        message = b"message %d " % i * 300
                        await stream.send_all(message)
                        await stream.send_eof()
                        got = b""
                        async for chunk in stream:
                            got += chunk
                        replies[i] = got == message
                        assert stream.socket.getpeername() == ("10.0.0.2", 8007)

            async with trio.open_nursery() as clients:
                for i in range(20):
                    clients.start_soon(client, i)
            assert replies == {i: True for i in range(20)}
            assert net.server.stats["tcp.passive_opens"] == 20
            nursery.cancel_scope.cancel()


async def test_ssl_over_tcp_with_a_throwaway_ca(two_stacks, autojump_clock):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER_NAME).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with two_stacks(latency=0.002) as net:
        name_server(net)
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                await nursery.start(trio.serve_ssl_over_tcp, serve_echo, 8443, server_context)
            with trionet.use_stack(net.client):
                stream = await trio.open_ssl_over_tcp_stream(SERVER_NAME, 8443,
                                                             ssl_context=client_context)
                async with stream:
                    await stream.send_all(b"secret " * 1000)
                    got = b""
                    while len(got) < 7000:
                        got += await stream.receive_some()
                    assert got == b"secret " * 1000
                    assert stream.getpeercert()["subjectAltName"] == (("DNS", SERVER_NAME),)
            nursery.cancel_scope.cancel()


async def test_anyio_tcp_and_udp(two_stacks, autojump_clock):
    anyio = pytest.importorskip("anyio")
    async with two_stacks(latency=0.002) as net:
        name_server(net)
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                await nursery.start(trio.serve_tcp, serve_echo, 9000)
                udp_server = await anyio.create_udp_socket(local_host="10.0.0.2", local_port=5300)
            with trionet.use_stack(net.client):
                async with await anyio.connect_tcp(SERVER_NAME, 9000) as stream:
                    await stream.send(b"anyio")
                    assert await stream.receive() == b"anyio"
                    assert stream.extra(anyio.abc.SocketAttribute.remote_address) == \
                        ("10.0.0.2", 9000)
                    assert stream.extra(anyio.abc.SocketAttribute.family) == stdlib.AF_INET
                infos = await anyio.getaddrinfo(SERVER_NAME, 53)
                assert {info[4] for info in infos} == {("10.0.0.2", 53)}
                udp = await anyio.create_connected_udp_socket(SERVER_NAME, 5300)
                async with udp, udp_server:
                    await udp.send(b"ping")
                    data, (host, port) = await udp_server.receive()
                    assert data == b"ping" and host == "10.0.0.1"
                    await udp_server.sendto(b"pong", host, port)
                    assert await udp.receive() == b"pong"
            nursery.cancel_scope.cancel()


async def test_httpx_fetches_from_an_h11_server(two_stacks, autojump_clock):
    httpx = pytest.importorskip("httpx")
    h11 = pytest.importorskip("h11")
    body = b"<html>served by trionet</html>" * 200

    async def http_server(stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some())
                    continue
                if isinstance(event, h11.Request):
                    assert event.target == b"/page"
                    response = h11.Response(status_code=200, headers=[
                        ("Content-Length", str(len(body))), ("Content-Type", "text/html")])
                    await stream.send_all(connection.send(response) + connection.send(
                        h11.Data(data=body)) + connection.send(h11.EndOfMessage()))
                elif isinstance(event, h11.EndOfMessage):
                    if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
                        try:
                            connection.start_next_cycle()
                        except h11.LocalProtocolError:
                            return
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return

    async with two_stacks(latency=0.002) as net:
        name_server(net)
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                await nursery.start(trio.serve_tcp, http_server, 8080)
            with trionet.use_stack(net.client):
                async with httpx.AsyncClient() as client:
                    for _ in range(3):  # the pooled connection is reused
                        response = await client.get(f"http://{SERVER_NAME}:8080/page")
                        assert response.status_code == 200 and response.content == body
            assert net.server.stats["tcp.passive_opens"] == 1
            nursery.cancel_scope.cancel()


# --- errors as the kernel's -------------------------------------------------------------


async def connect_errno(stack, address) -> int:
    with trionet.use_stack(stack):
        sock = trio.socket.socket()
        with pytest.raises(OSError) as info:
            await sock.connect(address)
        assert sock.fileno() == -1  # a failed connect closes the socket, as Trio's does
        return info.value.errno


async def test_connect_errors_are_the_kernels(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        # RST to a closed port (RFC 9293 3.10.7.1).
        assert await connect_errno(net.client, ("10.0.0.2", 81)) == errno.ECONNREFUSED
        # No route at all.
        assert await connect_errno(net.client, ("192.0.2.1", 80)) == errno.ENETUNREACH
        # On-link but nobody answers ARP (RFC 1122 2.3.2.2: the host is unreachable).
        assert await connect_errno(net.client, ("10.0.0.99", 80)) == errno.EHOSTUNREACH
        # SYNs unanswered.
        net.client.tcp.config.syn_retries = 1
        net.a.loss = 1.0
        assert await connect_errno(net.client, ("10.0.0.2", 80)) == errno.ETIMEDOUT
        net.a.loss = 0.0
        # Trio's open_tcp_stream reports them as OSErrors too.
        with trionet.use_stack(net.client):
            with pytest.raises(OSError):
                await trio.open_tcp_stream("10.0.0.2", 81)


async def test_families_and_types_a_kernel_without_them_would_refuse(two_stacks):
    async with two_stacks() as net:
        with trionet.use_stack(net.client):
            for family, kind, code in [(stdlib.AF_UNIX, stdlib.SOCK_STREAM, errno.EAFNOSUPPORT),
                                       (stdlib.AF_INET6, stdlib.SOCK_RAW, errno.ESOCKTNOSUPPORT),
                                       (stdlib.AF_INET, stdlib.SOCK_RAW, errno.ESOCKTNOSUPPORT),
                                       (stdlib.AF_INET, stdlib.SOCK_STREAM, errno.EPROTONOSUPPORT)]:
                proto = 17 if kind == stdlib.SOCK_STREAM and code == errno.EPROTONOSUPPORT else 0
                with pytest.raises(OSError) as info:
                    trio.socket.socket(family, kind, proto)
                assert info.value.errno == code
            # open_tcp_listeners(host=None): one socket per family on one port
            # (the IPv6 one with IPV6_V6ONLY, so they do not collide).
            listeners = await trio.open_tcp_listeners(8123)
            assert sorted(l.socket.family for l in listeners) == [stdlib.AF_INET,
                                                                  stdlib.AF_INET6]
            assert {l.socket.getsockname()[1] for l in listeners} == {8123}
            for listener in listeners:
                await listener.aclose()


async def test_socket_lifecycle_as_a_kernel_socket(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        with trionet.use_stack(net.server):
            listener = trio.socket.socket()
            listener.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 1)
            assert listener.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) == 1
            assert listener.getsockname() == ("0.0.0.0", 0)
            await listener.bind(("10.0.0.2", 7000))
            with pytest.raises(OSError) as info:
                await listener.bind(("10.0.0.2", 7001))
            assert info.value.errno == errno.EINVAL
            assert listener.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 0
            listener.listen(5)
            other = trio.socket.socket()
            with pytest.raises(OSError) as info:
                await other.bind(("10.0.0.2", 7000))
            assert info.value.errno == errno.EADDRINUSE
            with pytest.raises(OSError) as info:
                await other.bind(("10.9.9.9", 7000))
            assert info.value.errno == errno.EADDRNOTAVAIL
            other.close()
        with trionet.use_stack(net.client):
            sock = trio.socket.socket()
            assert sock.fileno() >= 0 and sock.type == stdlib.SOCK_STREAM
            with pytest.raises(OSError) as info:
                sock.getpeername()
            assert info.value.errno == errno.ENOTCONN
            sock.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY, False)
            sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_KEEPALIVE, 1)
            with pytest.raises(OSError) as info:  # refused, as Trio tolerates
                sock.setsockopt(stdlib.IPPROTO_TCP, 25, 16384)  # TCP_NOTSENT_LOWAT
            assert info.value.errno == errno.ENOPROTOOPT
            await sock.connect(("10.0.0.2", 7000))
        server, address = await listener.accept()
        assert address == sock.getsockname() and server.getpeername() == address
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0
        machine = net.client.tcp.connections[
            tuple(_parse(a) for a in (*sock.getsockname(), *sock.getpeername()))].machine
        assert machine.config.nodelay is False and machine.config.keepalive is True
        # A receive blocked when another task closes the socket wakes up closed.
        async with trio.open_nursery() as nursery:
            async def blocked():
                with pytest.raises(trio.ClosedResourceError):
                    await server.recv(10)
            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            server.close()
        assert server.fileno() == -1
        with pytest.raises(OSError) as info:
            await server.recv(10)
        assert info.value.errno == errno.EBADF
        assert await sock.recv(10) == b""  # the server's FIN
        server.close()  # twice is harmless
        sock.close()
        listener.close()


def _parse(value):
    from ipaddress import ip_address
    return ip_address(value) if isinstance(value, str) else value


async def test_connected_udp_reports_port_unreachable(two_stacks, autojump_clock):
    """RFC 1122 4.1.3.3: ICMP errors reach the application (Linux reports
    them on connected sockets: the next call raises ECONNREFUSED)."""
    async with two_stacks(latency=0.002) as net:
        with trionet.use_stack(net.client):
            sock = trio.socket.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM)
            await sock.connect(("10.0.0.2", 9999))
            assert sock.getsockname()[0] == "10.0.0.1"
            await sock.send(b"anyone?")
            await trio.sleep(0.1)
            with pytest.raises(ConnectionRefusedError):
                await sock.recv(100)
            with pytest.raises(OSError) as info:
                await sock.send(b"x" * 70000)
            assert info.value.errno == errno.EMSGSIZE
            unconnected = trio.socket.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM)
            with pytest.raises(OSError) as info:
                await unconnected.send(b"where to?")
            assert info.value.errno == errno.EDESTADDRREQ
            await unconnected.sendto(b"anyone?", ("10.0.0.2", 9999))
            await trio.sleep(0.1)
            assert not unconnected.is_readable()  # unconnected: no error reported
            sock.close()
            unconnected.close()


# --- contexts ------------------------------------------------------------------------------


async def test_outside_use_stack_trio_uses_the_kernel_in_the_same_run(two_stacks):
    async with two_stacks() as net:
        with trionet.use_stack(net.client):
            ours = trio.socket.socket()
        kernel = trio.socket.socket()
        try:
            assert type(ours).__module__ == "trionet.api.sockets"
            assert type(kernel).__module__.startswith("trio")
            # A kernel socket on loopback works beside the stack.
            await kernel.bind(("127.0.0.1", 0))
            assert kernel.getsockname()[0] == "127.0.0.1"
        finally:
            ours.close()
            kernel.close()


async def test_several_stacks_in_one_run_each_in_its_tasks(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        seen = {}

        async def where(name, stack):
            with trionet.use_stack(stack):
                await trio.sleep(0.01)
                sock = trio.socket.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM)
                await sock.connect(("10.0.0.2" if name == "client" else "10.0.0.1", 7))
                seen[name] = sock.getsockname()[0]
                sock.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(where, "client", net.client)
            nursery.start_soon(where, "server", net.server)
        assert seen == {"client": "10.0.0.1", "server": "10.0.0.2"}


async def test_names_come_from_the_stack(two_stacks):
    async with two_stacks() as net:
        net.client.hosts["db.internal"] = ["10.0.0.2"]
        with trionet.use_stack(net.client):
            infos = await trio.socket.getaddrinfo("DB.internal.", 5432, type=stdlib.SOCK_STREAM)
            assert infos == [(stdlib.AF_INET, stdlib.SOCK_STREAM, 6, "", ("10.0.0.2", 5432))]
            both = await trio.socket.getaddrinfo("db.internal", "postgresql")
            assert {(i[1], i[4]) for i in both} == {(stdlib.SOCK_STREAM, ("10.0.0.2", 5432)),
                                                    (stdlib.SOCK_DGRAM, ("10.0.0.2", 5432))}
            with pytest.raises(stdlib.gaierror) as info:
                await trio.socket.getaddrinfo("nowhere.example", 80)
            assert info.value.errno == stdlib.EAI_NONAME
            assert await trio.socket.getnameinfo(("10.0.0.2", 80), 0) == ("db.internal", "http")
            assert await trio.socket.getnameinfo(("10.0.0.3", 80), stdlib.NI_NUMERICSERV) == \
                ("10.0.0.3", "80")
        with pytest.raises((TypeError, ValueError)):
            net.client.hosts["bad"] = ["not an address"]
