"""Names to addresses for a stack: ``getaddrinfo``/``getnameinfo`` as the
socket module answers them, from the stack's static hosts table, then
``localhost``, then DNS (``stack.resolver``, when the stack knows name
servers), DNS answers in RFC 6724 destination order. Numeric hosts never
leave the process."""

from __future__ import annotations

import socket as stdlib
from collections.abc import Callable, Iterable, MutableMapping
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any

import trio

from ..validate import IPAddress

_SOCKTYPE_PROTO = {stdlib.SOCK_STREAM: stdlib.IPPROTO_TCP, stdlib.SOCK_DGRAM: stdlib.IPPROTO_UDP}
_FAMILY_OF = {4: stdlib.AF_INET, 6: stdlib.AF_INET6}


def _no_name(host) -> stdlib.gaierror:
    return stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known")


class HostsTable(MutableMapping):
    """Names -> addresses (a list of either family, in order of
    preference): ``stack.hosts["db"] = ["10.0.0.5"]``. Names are
    case-insensitive and a trailing dot is ignored, as in DNS; values are
    checked and kept as ``ipaddress`` objects."""

    def __init__(self) -> None:
        self._names: dict[str, list[IPAddress]] = {}

    @staticmethod
    def _key(name: Any) -> str:
        if isinstance(name, bytes):
            name = name.decode("ascii")
        if not isinstance(name, str) or not name.strip("."):
            raise TypeError(f"a host name must be a non-empty str, not {name!r}")
        return name.rstrip(".").lower()

    def __getitem__(self, name: str) -> list[IPAddress]:
        return list(self._names[self._key(name)])

    def __setitem__(self, name: str, addresses: Iterable | str | IPAddress) -> None:
        if isinstance(addresses, (str, IPv4Address, IPv6Address)):
            addresses = [addresses]
        parsed = []
        for address in addresses:
            try:
                parsed.append(address if isinstance(address, (IPv4Address, IPv6Address))
                              else ip_address(address))
            except ValueError:
                raise ValueError(f"hosts[{name!r}]: {address!r} is not an IP address") from None
        if not parsed:
            raise ValueError(f"hosts[{name!r}]: no addresses")
        self._names[self._key(name)] = parsed

    def __delitem__(self, name: str) -> None:
        del self._names[self._key(name)]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def names_of(self, address: IPAddress) -> list[str]:
        return [name for name, addresses in self._names.items() if address in addresses]

    def __repr__(self) -> str:
        return f"HostsTable({ {k: [str(a) for a in v] for k, v in self._names.items()} })"


def check_nameservers(value: Any) -> tuple[IPAddress, ...]:
    """``Stack(nameservers=...)``: a list of IP addresses of either family
    (text or ``ipaddress`` objects; a link-local IPv6 one may name its
    interface: "fe80::1%eth0"); TypeError/ValueError naming the argument."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, IPv4Address, IPv6Address)):
        raise TypeError(f"nameservers must be a list of IP addresses, not one "
                        f"{type(value).__name__} ({value!r}): write [{value!r}]")
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"nameservers must be a list of IP addresses, not "
                        f"{type(value).__name__}") from None
    servers: list[IPAddress] = []
    for item in items:
        if isinstance(item, str):
            try:
                item = ip_address(item)
            except ValueError:
                raise ValueError(f"nameservers: {item!r} is not an IP address") from None
        elif not isinstance(item, (IPv4Address, IPv6Address)):
            raise TypeError(f"nameservers: each must be an IP address (a str or an ipaddress "
                            f"object), not {type(item).__name__} {item!r}")
        if item.is_multicast or item.is_unspecified:
            raise ValueError(f"nameservers: {item} cannot be a name server")
        if item not in servers:
            servers.append(item)
    return tuple(servers)


def current_nameservers(static: Iterable[IPAddress], interfaces) -> list[IPAddress]:
    """The name servers in use: ``static`` ones, then those of each
    interface's DHCP lease, then those its IPv6 routers advertise (RFC 8106
    RDNSS), each once."""
    found = list(static)
    for iface in interfaces:
        lease = getattr(iface, "dhcp_lease", None)
        found.extend(getattr(lease, "dns_servers", None) or ())
    for iface in interfaces:
        found.extend(getattr(iface, "ipv6_nameservers", None) or ())
    servers: list[IPAddress] = []
    for server in found:
        if isinstance(server, (IPv4Address, IPv6Address)) and server not in servers:
            servers.append(server)
    return servers


def service_port(port: Any, socktype: int) -> int:
    """A port number from an int, a numeric string or a service name
    (from the local services database, as the socket module does)."""
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii")
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise stdlib.gaierror(stdlib.EAI_SERVICE, "Servname not supported for ai_socktype")
        return port
    if isinstance(port, str):
        if port.isdigit():
            return service_port(int(port), socktype)
        try:
            return stdlib.getservbyname(port, "udp" if socktype == stdlib.SOCK_DGRAM else "tcp")
        except OSError:
            raise stdlib.gaierror(stdlib.EAI_SERVICE,
                                  "Servname not supported for ai_socktype") from None
    raise TypeError(f"port must be an int, a str or None, not {type(port).__name__}")


def address_infos(addresses: Iterable[IPAddress], port: int, family: int, socktype: int,
                  proto: int, canonname: str = "",
                  scope_index: Callable[[str], int] = lambda name: 0) -> list[tuple]:
    """The 5-tuples socket.getaddrinfo returns for these addresses (an IPv6
    one with a scope: "fe80::1%eth0" and the interface's index as
    ``scope_id``, from ``scope_index``)."""
    kinds = [socktype] if socktype else [stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM]
    infos = []
    for address in addresses:
        fam = _FAMILY_OF[address.version]
        if family not in (0, stdlib.AF_UNSPEC) and family != fam:
            continue
        if fam == stdlib.AF_INET:
            sockaddr = (str(address), port)
        else:
            scope = address.scope_id
            sockaddr = (str(address), port, 0, scope_index(scope) if scope else 0)
        for kind in kinds:
            infos.append((stdlib.AddressFamily(fam), stdlib.SocketKind(kind),
                          proto or _SOCKTYPE_PROTO.get(kind, 0), canonname, sockaddr))
    return infos


async def getaddrinfo(stack, host, port, family: int = 0, type: int = 0, proto: int = 0,
                      flags: int = 0) -> list[tuple]:
    """What ``socket.getaddrinfo`` would answer, from ``stack``: numeric
    hosts as they are, ``None`` as the wildcard (AI_PASSIVE) or loopback,
    names from ``stack.hosts``; ``socket.gaierror`` (EAI_NONAME) for names
    it does not know."""
    await trio.lowlevel.checkpoint()
    if family not in (0, stdlib.AF_UNSPEC, stdlib.AF_INET, stdlib.AF_INET6):
        raise stdlib.gaierror(stdlib.EAI_FAMILY, "ai_family not supported")
    if type not in (0, stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM):
        raise stdlib.gaierror(stdlib.EAI_SOCKTYPE, "ai_socktype not supported")
    number = service_port(port, type)
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if host is None or host == "":
        if host == "" and not flags & stdlib.AI_PASSIVE:
            raise _no_name(host)
        wildcard = flags & stdlib.AI_PASSIVE
        addresses = [IPv4Address(0) if wildcard else IPv4Address("127.0.0.1")]
        if stdlib.AF_INET6 in stack.socket_families():
            addresses.insert(0, IPv6Address(0) if wildcard else IPv6Address(1))
        return address_infos(addresses, number, family, type, proto)
    try:
        address = ip_address(host)
    except ValueError:
        if flags & stdlib.AI_NUMERICHOST:
            raise _no_name(host) from None
        addresses, canonical = await resolve(stack, host, family)
        if canonical and flags & stdlib.AI_CANONNAME:
            host = canonical
    else:
        if address.version == 6 and address.scope_id is not None:
            address = _with_named_scope(stack, address)
        addresses = [address]
    infos = address_infos(addresses, number, family, type, proto,
                          host if flags & stdlib.AI_CANONNAME else "",
                          stack.network.interface_index)
    if not infos:
        raise stdlib.gaierror(stdlib.EAI_ADDRFAMILY, "Address family for hostname not supported")
    return infos


def _with_named_scope(stack, address: IPv6Address) -> IPv6Address:
    """"fe80::1%2" (an index, as the C library takes it) as "fe80::1%eth1";
    EAI_NONAME for an interface the stack does not have."""
    scope = address.scope_id
    if scope.isdigit():
        name = stack.network.interface_name(int(scope))
        if name is None:
            raise _no_name(str(address))
        return IPv6Address(f"{IPv6Address(int(address))}%{name}")
    if stack.network.interface_index(scope) == 0:
        raise _no_name(str(address))
    return address


async def resolve(stack, name: str, family: int = 0) -> tuple[list[IPAddress], str]:
    """The addresses of ``name`` and its canonical name ("" if not from
    DNS): the hosts table, then ``localhost``, then DNS (sorted as RFC 6724
    6 asks); ``socket.gaierror`` when none has it."""
    try:
        return stack.hosts[name], ""
    except (KeyError, TypeError):
        pass
    if name.rstrip(".").lower() == "localhost":
        return [IPv4Address("127.0.0.1")], ""
    addresses, canonical = await stack.resolver.resolve(name, family)
    return sort_destinations(stack, addresses), canonical


# --- RFC 6724 destination address selection ----------------------------------

#: RFC 6724 2.1: the default policy table (prefix, precedence, label); IPv4
#: addresses are looked up as IPv4-mapped ones.
_POLICY = [(IPv6Network(prefix), precedence, label) for prefix, precedence, label in (
    ("::1/128", 50, 0), ("::ffff:0:0/96", 35, 4), ("2002::/16", 30, 2), ("2001::/32", 5, 5),
    ("fc00::/7", 3, 13), ("::/96", 1, 3), ("fec0::/10", 1, 11), ("3ffe::/16", 1, 12),
    ("::/0", 40, 1))]
_LINK_LOCAL, _SITE_LOCAL, _GLOBAL = 0x2, 0x5, 0xE


def _policy(address: IPAddress) -> tuple[int, int]:
    if address.version == 4:
        address = IPv6Address(0xFFFF00000000 | int(address))
    # The table above lists longer prefixes first (longest match, 2.1).
    best = max((entry for entry in _POLICY if address in entry[0]),
               key=lambda entry: entry[0].prefixlen)
    return best[1], best[2]


def _scope(address: IPAddress) -> int:
    """RFC 6724 3.1 (RFC 4291 2.7; IPv4 as 3.2 maps it)."""
    if address.version == 4:
        if address.is_loopback or address.is_link_local:
            return _LINK_LOCAL
        return _GLOBAL
    if address.is_multicast:
        return (int(address) >> 112) & 0xF
    if address.is_loopback or address.is_link_local:
        return _LINK_LOCAL
    if address.is_site_local:
        return _SITE_LOCAL
    return _GLOBAL


def sort_destinations(stack, addresses: list[IPAddress]) -> list[IPAddress]:
    """``addresses`` in RFC 6724 6 order: rule 1 (a destination we have no
    route or source address for last), rule 2 (the source's scope matches),
    rule 5 (its label matches), rule 6 (higher precedence: IPv6 before
    IPv4), rule 8 (smaller scope); otherwise as given (rule 10: DNS
    round-robin is kept; rule 9's longest prefix match is not applied, as
    RFC 6724 allows for IPv4 and many stacks do for IPv6 too)."""
    def key(address: IPAddress) -> tuple:
        scope = _scope(address)
        precedence, label = _policy(address)
        try:
            source = stack.network.path_to(stack.network.scoped(address)).source
        except (OSError, ValueError):
            source = None
        if source is None:
            return (1, 1, 1, -precedence, scope)
        return (0, _scope(source) != scope, _policy(source)[1] != label, -precedence, scope)
    return sorted(addresses, key=key)


async def getnameinfo(stack, sockaddr, flags: int) -> tuple[str, str]:
    """What ``socket.getnameinfo`` would answer, from ``stack.hosts``."""
    await trio.lowlevel.checkpoint()
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    host, port = sockaddr[0], sockaddr[1]
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        raise stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known") from None
    name = str(address)
    if not flags & stdlib.NI_NUMERICHOST:
        names = stack.hosts.names_of(address)
        if names:
            name = names[0]
        elif flags & stdlib.NI_NAMEREQD:
            raise stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known")
    service = str(port)
    if not flags & stdlib.NI_NUMERICSERV:
        try:
            service = stdlib.getservbyport(port, "udp" if flags & stdlib.NI_DGRAM else "tcp")
        except OSError:
            pass
    return name, service


# --- connecting to a name ------------------------------------------------------------------


def is_name(host: Any) -> bool:
    """Whether ``host`` is a name to resolve (not an address literal)."""
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or not host or host == "localhost":
        return False
    try:
        ip_address(host)
    except ValueError:
        return True
    return False


def _interleave(addresses: list[IPAddress]) -> list[IPAddress]:
    """RFC 6555 5.4 (and RFC 8305 4): the first attempt of the other family
    comes second."""
    ordered = list(addresses)
    for i, address in enumerate(ordered):
        if address.version != ordered[0].version:
            ordered.insert(1, ordered.pop(i))
            break
    return ordered


async def open_tcp_by_name(stack, host: Any, port: int, *, local_port: int | None,
                           delay: float) -> Any:
    """Resolve ``host`` and connect to its addresses as Trio's
    ``open_tcp_stream`` does (RFC 8305 5, "happy eyeballs"): an attempt
    starts when the one before fails or ``delay`` seconds pass; the first
    connection wins and the other attempts are cancelled (one that connects
    anyway is reset)."""
    from ..tcp.stream import Stream

    if isinstance(host, bytes):
        host = host.decode("ascii")
    infos = await getaddrinfo(stack, host, port, 0, stdlib.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    targets = _interleave(addresses)
    winner: list = []
    errors: list[OSError] = []

    async def attempt(address: IPAddress, failed: trio.Event, nursery: trio.Nursery) -> None:
        try:
            conn = await stack.tcp.connect(address, port, local_port=local_port)
        except OSError as exc:
            errors.append(exc)
            failed.set()
            return
        if winner:
            conn.abort()  # another attempt won meanwhile
            return
        winner.append(conn)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for address in targets:
            failed = trio.Event()
            nursery.start_soon(attempt, address, failed, nursery)
            with trio.move_on_after(delay):
                await failed.wait()
    if winner:
        return Stream(winner[0])
    if len(errors) == 1:
        raise errors[0]
    message = f"all attempts to connect to {host}:{port} failed"
    raise OSError(message) from ExceptionGroup(message, errors)
