"""DHCPv4 messages (RFC 2131 section 2, options from RFC 2132).

A ``DhcpMessage`` keeps its options as an ordered tuple of ``(code, value)``
pairs, value the raw bytes; typed accessors decode the options a client
needs. The options with a typed accessor are checked (length, RFC 2132) when
a message is parsed or made, so the accessors never fail. ``sname`` and
``file`` are not kept: they are read only for options when the overload
option (52) says so, and built as zeros.
"""

import struct
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

import attrs

from .errors import WireError

BOOTREQUEST = 1
BOOTREPLY = 2

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68

HTYPE_ETHERNET = 1

# Message types (RFC 2132 9.6).
DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7
DHCPINFORM = 8

# Option codes (RFC 2132).
OPTION_PAD = 0
OPTION_SUBNET_MASK = 1
OPTION_ROUTER = 3
OPTION_DNS_SERVERS = 6
OPTION_HOSTNAME = 12
OPTION_DOMAIN_NAME = 15
OPTION_INTERFACE_MTU = 26
OPTION_REQUESTED_IP = 50
OPTION_LEASE_TIME = 51
OPTION_OVERLOAD = 52
OPTION_MESSAGE_TYPE = 53
OPTION_SERVER_ID = 54
OPTION_PARAMETER_REQUEST_LIST = 55
OPTION_MESSAGE = 56
OPTION_MAX_MESSAGE_SIZE = 57
OPTION_RENEWAL_TIME = 58
OPTION_REBINDING_TIME = 59
OPTION_CLIENT_ID = 61
OPTION_END = 255

#: A lease time of all ones means "infinity" (RFC 2131 3.3).
INFINITE_LEASE = 0xFFFFFFFF

#: What a client asks for unless told otherwise (RFC 2132 9.8).
DEFAULT_PARAMETER_REQUEST_LIST = (
    OPTION_SUBNET_MASK, OPTION_ROUTER, OPTION_DNS_SERVERS, OPTION_DOMAIN_NAME,
    OPTION_INTERFACE_MTU, OPTION_LEASE_TIME, OPTION_RENEWAL_TIME, OPTION_REBINDING_TIME)

DHCP_FIXED_LEN = 236  # op .. file, RFC 2131 figure 1
DHCP_MIN_LEN = 240  # with the magic cookie
#: BOOTP's 64-byte vendor area makes 300 bytes (RFC 951); servers expect it.
BOOTP_MIN_LEN = 300

MAGIC_COOKIE = bytes((99, 130, 83, 99))  # RFC 2132 2
BROADCAST_FLAG = 0x8000  # RFC 2131 2, figure 2

_MAX_CHADDR = 16
_SNAME = slice(44, 108)
_FILE = slice(108, 236)
# op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr
_HEADER = struct.Struct("!BBBBIHHIIII16s")
_ZERO = IPv4Address(0)

# Typed options: (minimum length, exact length or None, multiple of).
_SHAPES = {
    OPTION_SUBNET_MASK: (4, 4, 1),
    OPTION_ROUTER: (4, None, 4),
    OPTION_DNS_SERVERS: (4, None, 4),
    OPTION_HOSTNAME: (1, None, 1),
    OPTION_DOMAIN_NAME: (1, None, 1),
    OPTION_INTERFACE_MTU: (2, 2, 1),
    OPTION_REQUESTED_IP: (4, 4, 1),
    OPTION_LEASE_TIME: (4, 4, 1),
    OPTION_OVERLOAD: (1, 1, 1),
    OPTION_MESSAGE_TYPE: (1, 1, 1),
    OPTION_SERVER_ID: (4, 4, 1),
    OPTION_PARAMETER_REQUEST_LIST: (1, None, 1),
    OPTION_MESSAGE: (1, None, 1),
    OPTION_MAX_MESSAGE_SIZE: (2, 2, 1),
    OPTION_RENEWAL_TIME: (4, 4, 1),
    OPTION_REBINDING_TIME: (4, 4, 1),
    OPTION_CLIENT_ID: (2, None, 1),  # RFC 2132 9.14: type and at least one byte
}


def _option_problem(code: int, value: bytes) -> str | None:
    shape = _SHAPES.get(code)
    if shape is None:
        return None
    minimum, exact, multiple = shape
    n = len(value)
    if n < minimum or (exact is not None and n != exact) or n % multiple:
        return f"option {code} has length {n}"
    return None


def _to_options(value) -> tuple[tuple[int, bytes], ...]:
    """Options from a mapping or pairs, each value as bytes; one entry per
    code (RFC 3396 joins repeated codes, so a second one is ambiguous)."""
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    seen = set()
    for code, data in items:
        if not isinstance(code, int) or not 0 < code < OPTION_END:
            raise ValueError(f"bad DHCP option code {code!r}")
        if code in seen:
            raise ValueError(f"DHCP option {code} given twice")
        seen.add(code)
        data = bytes(data)
        problem = _option_problem(code, data)
        if problem is not None:
            raise ValueError(problem)
        out.append((code, data))
    return tuple(out)


def _address_list(value: bytes) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(value[i:i + 4]) for i in range(0, len(value), 4))


def _text(value: bytes) -> str:
    # RFC 2132 3.14/3.17 say no trailing NUL, but some servers send one.
    return value.rstrip(b"\0").decode("utf-8", "replace")


@attrs.frozen(slots=True)
class DhcpMessage:
    op: int
    xid: int
    #: The client hardware address: ``hlen`` bytes, a 6-byte MAC on Ethernet.
    chaddr: bytes
    #: Ordered ``(code, value)`` pairs without PAD and END; a mapping or any
    #: iterable of pairs is accepted and converted.
    options: tuple[tuple[int, bytes], ...] = attrs.field(default=(), converter=_to_options)
    htype: int = HTYPE_ETHERNET
    hops: int = 0
    secs: int = 0
    #: The whole flags field; ``broadcast`` reads its top bit.
    flags: int = 0
    ciaddr: IPv4Address = _ZERO
    yiaddr: IPv4Address = _ZERO
    siaddr: IPv4Address = _ZERO
    giaddr: IPv4Address = _ZERO

    @property
    def hlen(self) -> int:
        return len(self.chaddr)

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def option(self, code: int) -> bytes | None:
        for c, value in self.options:
            if c == code:
                return value
        return None

    def _u32(self, code: int) -> int | None:
        value = self.option(code)
        return None if value is None else int.from_bytes(value, "big")

    def _address(self, code: int) -> IPv4Address | None:
        value = self.option(code)
        return None if value is None else IPv4Address(value)

    def _text_option(self, code: int) -> str | None:
        value = self.option(code)
        return None if value is None else _text(value)

    @property
    def message_type(self) -> int | None:
        value = self.option(OPTION_MESSAGE_TYPE)
        return None if value is None else value[0]

    @property
    def server_id(self) -> IPv4Address | None:
        return self._address(OPTION_SERVER_ID)

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._address(OPTION_REQUESTED_IP)

    @property
    def lease_time(self) -> int | None:
        """Seconds; ``INFINITE_LEASE`` means no expiry (RFC 2131 3.3)."""
        return self._u32(OPTION_LEASE_TIME)

    @property
    def renewal_time(self) -> int | None:
        """T1 in seconds (RFC 2132 9.11)."""
        return self._u32(OPTION_RENEWAL_TIME)

    @property
    def rebinding_time(self) -> int | None:
        """T2 in seconds (RFC 2132 9.12)."""
        return self._u32(OPTION_REBINDING_TIME)

    @property
    def subnet_mask(self) -> IPv4Address | None:
        return self._address(OPTION_SUBNET_MASK)

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        value = self.option(OPTION_ROUTER)
        return () if value is None else _address_list(value)

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        value = self.option(OPTION_DNS_SERVERS)
        return () if value is None else _address_list(value)

    @property
    def domain_name(self) -> str | None:
        return self._text_option(OPTION_DOMAIN_NAME)

    @property
    def hostname(self) -> str | None:
        return self._text_option(OPTION_HOSTNAME)

    @property
    def message(self) -> str | None:
        """Option 56, an error text (with a NAK or DECLINE)."""
        return self._text_option(OPTION_MESSAGE)

    @property
    def interface_mtu(self) -> int | None:
        value = self.option(OPTION_INTERFACE_MTU)
        return None if value is None else int.from_bytes(value, "big")

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        value = self.option(OPTION_PARAMETER_REQUEST_LIST)
        return () if value is None else tuple(value)

    @property
    def client_id(self) -> bytes | None:
        return self.option(OPTION_CLIENT_ID)

    # --- the client's messages (RFC 2131 4.4.1 table 5, 4.3.2) ----------------

    @classmethod
    def discover(cls, xid: int, chaddr: bytes, *, secs: int = 0, broadcast: bool = True,
                 requested_ip: IPv4Address | None = None, **options) -> "DhcpMessage":
        """``options``: see ``_client_options``."""
        return cls(BOOTREQUEST, xid, chaddr,
                   _client_options(DHCPDISCOVER, requested_ip=requested_ip, **options),
                   secs=secs, flags=BROADCAST_FLAG if broadcast else 0)

    @classmethod
    def request_selecting(cls, xid: int, chaddr: bytes, offered_ip: IPv4Address,
                          server_id: IPv4Address, *, secs: int = 0, broadcast: bool = True,
                          **options) -> "DhcpMessage":
        """Accepting an offer: server id and requested IP, ciaddr zero."""
        return cls(BOOTREQUEST, xid, chaddr,
                   _client_options(DHCPREQUEST, requested_ip=offered_ip, server_id=server_id,
                                   **options),
                   secs=secs, flags=BROADCAST_FLAG if broadcast else 0)

    @classmethod
    def request_init_reboot(cls, xid: int, chaddr: bytes, requested_ip: IPv4Address, *,
                            secs: int = 0, broadcast: bool = True,
                            **options) -> "DhcpMessage":
        """Confirming a remembered address: requested IP, no server id,
        ciaddr zero."""
        return cls(BOOTREQUEST, xid, chaddr,
                   _client_options(DHCPREQUEST, requested_ip=requested_ip, **options),
                   secs=secs, flags=BROADCAST_FLAG if broadcast else 0)

    @classmethod
    def request_renewing(cls, xid: int, chaddr: bytes, ciaddr: IPv4Address, *, secs: int = 0,
                         **options) -> "DhcpMessage":
        """Extending a lease (unicast to its server): ciaddr, neither
        requested IP nor server id."""
        return cls(BOOTREQUEST, xid, chaddr, _client_options(DHCPREQUEST, **options),
                   secs=secs, ciaddr=ciaddr)

    @classmethod
    def request_rebinding(cls, xid: int, chaddr: bytes, ciaddr: IPv4Address, *, secs: int = 0,
                          **options) -> "DhcpMessage":
        """The same fields as renewing; only the destination (broadcast)
        differs (RFC 2131 4.3.2)."""
        return cls.request_renewing(xid, chaddr, ciaddr, secs=secs, **options)

    @classmethod
    def decline(cls, xid: int, chaddr: bytes, address: IPv4Address, server_id: IPv4Address, *,
                client_id: bytes | None = None, message: str | None = None) -> "DhcpMessage":
        """The address is in use: requested IP and server id, ciaddr zero,
        no parameter list (table 5)."""
        return cls(BOOTREQUEST, xid, chaddr,
                   _client_options(DHCPDECLINE, requested_ip=address, server_id=server_id,
                                   client_id=client_id, message=message, parameters=()))

    @classmethod
    def release(cls, xid: int, chaddr: bytes, address: IPv4Address, server_id: IPv4Address, *,
                client_id: bytes | None = None, message: str | None = None) -> "DhcpMessage":
        """Giving the lease back: ciaddr and server id, no requested IP."""
        return cls(BOOTREQUEST, xid, chaddr,
                   _client_options(DHCPRELEASE, server_id=server_id, client_id=client_id,
                                   message=message, parameters=()),
                   ciaddr=address)


def _client_options(message_type: int, *, requested_ip: IPv4Address | None = None,
                    server_id: IPv4Address | None = None, client_id: bytes | None = None,
                    hostname: str | None = None, lease_time: int | None = None,
                    parameters: Iterable[int] = DEFAULT_PARAMETER_REQUEST_LIST,
                    message: str | None = None,
                    extra_options: Iterable[tuple[int, bytes]] = ()) -> list[tuple[int, bytes]]:
    """Message type first (what servers look at first), then the rest."""
    options = [(OPTION_MESSAGE_TYPE, bytes((message_type,)))]
    if client_id is not None:
        options.append((OPTION_CLIENT_ID, client_id))
    if requested_ip is not None:
        options.append((OPTION_REQUESTED_IP, requested_ip.packed))
    if server_id is not None:
        options.append((OPTION_SERVER_ID, server_id.packed))
    if lease_time is not None:
        options.append((OPTION_LEASE_TIME, lease_time.to_bytes(4, "big")))
    if hostname is not None:
        options.append((OPTION_HOSTNAME, hostname.encode()))
    parameters = bytes(parameters)
    if parameters:
        options.append((OPTION_PARAMETER_REQUEST_LIST, parameters))
    if message is not None:
        options.append((OPTION_MESSAGE, message.encode()))
    options.extend(extra_options)
    return options


def _read_options(data, start: int, end: int, found: dict[int, bytearray]) -> None:
    """Options from ``data[start:end]`` into ``found``, in order; a repeated
    code continues the earlier value (RFC 3396)."""
    i = start
    while i < end:
        code = data[i]
        if code == OPTION_PAD:  # RFC 2132 3.1
            i += 1
            continue
        if code == OPTION_END:  # RFC 2132 3.2
            return
        if i + 1 >= end:
            raise WireError("dhcp.bad_option", f"option {code} has no length")
        n = data[i + 1]
        if i + 2 + n > end:
            raise WireError("dhcp.bad_option", f"option {code} runs past the end")
        value = found.get(code)
        if value is None:
            found[code] = bytearray(data[i + 2:i + 2 + n])
        else:
            value += data[i + 2:i + 2 + n]
        i += 2 + n
    # No END: tolerated, the options simply stop with the data.


def parse_dhcp(data) -> DhcpMessage:
    """Parse a DHCP message (a UDP payload); bytes after END are ignored."""
    n = len(data)
    if n < DHCP_MIN_LEN:
        raise WireError("dhcp.truncated")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr) = _HEADER.unpack_from(data)
    if op != BOOTREQUEST and op != BOOTREPLY:
        raise WireError("dhcp.bad_op", str(op))
    if hlen > _MAX_CHADDR:
        raise WireError("dhcp.bad_hlen", str(hlen))
    if bytes(data[DHCP_FIXED_LEN:DHCP_MIN_LEN]) != MAGIC_COOKIE:
        raise WireError("dhcp.bad_cookie")
    found: dict[int, bytearray] = {}
    _read_options(data, DHCP_MIN_LEN, n, found)
    overload = found.get(OPTION_OVERLOAD)
    if overload is not None and len(overload) == 1:
        # RFC 2131 4.1: options, then 'file', then 'sname'.
        if overload[0] & 1:
            _read_options(data, _FILE.start, _FILE.stop, found)
        if overload[0] & 2:
            _read_options(data, _SNAME.start, _SNAME.stop, found)
    options = []
    for code, value in found.items():
        value = bytes(value)
        problem = _option_problem(code, value)
        if problem is not None:
            raise WireError("dhcp.bad_option", problem)
        options.append((code, value))
    return DhcpMessage(op, xid, chaddr[:hlen], options, htype, hops, secs, flags,
                       IPv4Address(ciaddr), IPv4Address(yiaddr), IPv4Address(siaddr),
                       IPv4Address(giaddr))


def build_dhcp(msg: DhcpMessage) -> bytes:
    """The message with its options and END, zero-padded to 300 bytes."""
    if msg.op != BOOTREQUEST and msg.op != BOOTREPLY:
        raise ValueError(f"bad DHCP op {msg.op!r}")
    if len(msg.chaddr) > _MAX_CHADDR:
        raise ValueError("chaddr longer than 16 bytes")
    try:
        header = _HEADER.pack(msg.op, msg.htype, len(msg.chaddr), msg.hops, msg.xid, msg.secs,
                              msg.flags, int(msg.ciaddr), int(msg.yiaddr), int(msg.siaddr),
                              int(msg.giaddr), msg.chaddr)
    except struct.error as exc:
        raise ValueError(f"bad DHCP header field: {exc}") from None
    parts = [header, bytes(_FILE.stop - len(header)), MAGIC_COOKIE]
    for code, value in msg.options:
        # RFC 3396: a value over 255 bytes goes as consecutive pieces; an
        # empty one (e.g. rapid commit) is a code with length zero.
        for i in range(0, max(len(value), 1), 255):
            piece = value[i:i + 255]
            parts.append(bytes((code, len(piece))) + piece)
    parts.append(bytes((OPTION_END,)))
    raw = b"".join(parts)
    if len(raw) < BOOTP_MIN_LEN:
        raw += bytes(BOOTP_MIN_LEN - len(raw))
    return raw
