"""The DHCPv4 client state machine without I/O (RFC 2131 4.4, figure 5).

The machine decides what to send and when; the caller owns the socket, the
ARP probe and the timer. Every input takes ``now`` (seconds, any monotonic
clock), and the results wait in a queue read with ``pop_actions()``:

- ``SendMessage``: send ``message`` from UDP port 68 to port 67 at
  ``destination`` (255.255.255.255, or the server when renewing and
  releasing), from ``message.ciaddr`` (0.0.0.0 before an address is bound).
- ``ProbeAddress``: check that nobody uses ``address`` (RFC 5227 2.1.1),
  then call ``on_probe_result``. The machine sets no timer meanwhile.
- ``LeaseAcquired``: configure the lease's address, routes and servers.
- ``LeaseRenewed``: the same address, with new times (and maybe options).
- ``LeaseLost``: stop using the address (expired, NAK, released, changed,
  restarted); it always follows a ``LeaseAcquired`` for that lease.

After every input call ``on_timer`` at ``next_deadline`` (``inf`` when
nothing is scheduled). Randomness (transaction ids, retransmission jitter,
the start-up delay) comes only from the ``random.Random`` passed in.

Choices where the RFC leaves room:

- The first valid OFFER is taken; no window to compare offers.
- The address is probed after the ACK, not the OFFER: DECLINE is meaningful
  only once the server has committed (RFC 2131 3.1 step 5).
- The start-up wait before the first DISCOVER is ``initial_delay``, uniform
  in (0, 1) s by default; RFC 2131 4.4.1 suggests (1, 10) to spread a power
  cut's worth of clients, and a caller may ask for that.
- Retransmission follows RFC 2131 4.1 (4, 8, 16, 32, 64, 64... s, each
  +-1 s). A REQUEST (selecting, or INIT-REBOOT) goes ``request_attempts``
  times, then the client restarts from INIT (RFC 2131 4.4.1); a DISCOVER
  is retransmitted for as long as it takes.
- INIT-REBOOT sends its REQUEST at once, so ``start`` leaves the machine in
  REBOOTING; with no remembered address it waits in INIT.
- After a NAK the client restarts at once, and after each further NAK
  without a lease in between waits twice as long (1 s up to 64 s), so a
  server that NAKs everything cannot make it loop at network speed.
- A lease with 0 s is refused; T1/T2 outside 0 < T1 <= T2 <= lease are
  replaced by the defaults (RFC 2131 4.4.5).

Ignored messages raise ``WireError`` with a ``"dhcp.*"`` reason, the stack's
way of counting drops, and leave the machine untouched.
"""

import enum
import math
import random
from collections import deque
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import attrs

from ..wire.dhcp import (
    BOOTREPLY,
    DEFAULT_PARAMETER_REQUEST_LIST,
    DHCPACK,
    DHCPNAK,
    DHCPOFFER,
    HTYPE_ETHERNET,
    INFINITE_LEASE,
    DhcpMessage,
)
from ..wire.errors import WireError

LIMITED_BROADCAST = IPv4Address("255.255.255.255")

# RFC 2131 4.1: 4 s, doubled per retransmission up to 64 s, each +-1 s.
_FIRST_TIMEOUT = 4.0
_MAX_TIMEOUT = 64.0
_JITTER = 1.0
# RFC 2131 4.4.5: retransmit in RENEWING/REBINDING no faster than this.
_MIN_RENEW_INTERVAL = 60.0
# RFC 2131 4.4.5: T1 and T2 default to these fractions of the lease.
_T1_FRACTION = 0.5
_T2_FRACTION = 0.875
# RFC 2131 3.1 step 5: wait at least 10 s after a DECLINE.
_MIN_DECLINE_DELAY = 10.0
# RFC 5227 2.1.1: after MAX_CONFLICTS, one attempt per RATE_LIMIT_INTERVAL.
_MAX_CONFLICTS = 10
_RATE_LIMIT_INTERVAL = 60.0
_MAX_NAK_DELAY = 64.0
_MIN_MTU = 68  # RFC 2132 5.1
_MAX_SECS = 0xFFFF


class DhcpState(enum.Enum):
    STOPPED = "stopped"  # before start() and after release()
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    CHECKING = "checking"  # ACKed, the address being probed (RFC 5227)
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    INIT_REBOOT = "init-reboot"
    REBOOTING = "rebooting"


@attrs.frozen(slots=True)
class DhcpLease:
    #: The leased address (``address`` is it with its prefix).
    ip: IPv4Address
    prefix_length: int
    server_id: IPv4Address
    #: When the REQUEST that won the lease was first sent: the lease runs
    #: from there (RFC 2131 4.4.1).
    acquired_at: float
    #: Seconds; ``inf`` for an infinite lease (RFC 2131 3.3).
    lease_time: float
    t1: float
    t2: float
    routers: tuple[IPv4Address, ...] = ()
    dns_servers: tuple[IPv4Address, ...] = ()
    domain_name: str | None = None
    mtu: int | None = None

    @property
    def interface(self) -> IPv4Interface:
        return IPv4Interface((self.ip, self.prefix_length))

    @property
    def address(self) -> IPv4Interface:
        """The leased address with its prefix ("10.0.0.50/24")."""
        return self.interface

    @property
    def router(self) -> IPv4Address | None:
        return self.routers[0] if self.routers else None

    @property
    def t1_at(self) -> float:
        return self.acquired_at + self.t1

    @property
    def t2_at(self) -> float:
        return self.acquired_at + self.t2

    @property
    def expires_at(self) -> float:
        return self.acquired_at + self.lease_time


@attrs.frozen(slots=True)
class SendMessage:
    message: DhcpMessage
    destination: IPv4Address

    @property
    def broadcast(self) -> bool:
        return self.destination == LIMITED_BROADCAST


@attrs.frozen(slots=True)
class ProbeAddress:
    address: IPv4Address


@attrs.frozen(slots=True)
class LeaseAcquired:
    lease: DhcpLease


@attrs.frozen(slots=True)
class LeaseRenewed:
    lease: DhcpLease


@attrs.frozen(slots=True)
class LeaseLost:
    lease: DhcpLease
    #: "expired", "nak", "released", "changed" (a renewal gave another
    #: address) or "restarted" (start() while bound).
    reason: str


def _check_initial_delay(instance, attribute, value):
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"initial_delay must be (low, high) with 0 <= low <= high: {value!r}")


@attrs.frozen(slots=True)
class DhcpClientConfig:
    #: Uniform random wait (s) before the first DISCOVER; RFC 2131 4.4.1
    #: suggests (1, 10).
    initial_delay: tuple[float, float] = attrs.field(default=(0.0, 1.0),
                                                     validator=_check_initial_delay)
    #: Ask servers to broadcast replies (RFC 2131 4.1): for a stack that
    #: cannot receive unicast before it has an address.
    broadcast_flag: bool = True
    #: Option 61, sent in every message when set (RFC 2131 4.2).
    client_id: bytes | None = None
    hostname: str | None = None
    parameters: tuple[int, ...] = DEFAULT_PARAMETER_REQUEST_LIST
    #: Transmissions of a selecting or INIT-REBOOT REQUEST before restarting.
    request_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Probe an ACKed address before using it (RFC 2131 3.1 step 5).
    probe: bool = True
    decline_delay: float = attrs.field(default=_MIN_DECLINE_DELAY,
                                       validator=attrs.validators.ge(_MIN_DECLINE_DELAY))


def _usable(address: IPv4Address) -> bool:
    return not (address.is_unspecified or address.is_multicast or address.is_loopback
                or address.is_reserved)


def _prefix_length(msg: DhcpMessage) -> int:
    mask = msg.subnet_mask
    if mask is not None:
        try:
            return IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            pass  # not contiguous: as if absent
    # No usable mask: the classful default (RFC 791 3.2).
    first = msg.yiaddr.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def _lease_from(msg: DhcpMessage, acquired_at: float, server_id: IPv4Address) -> DhcpLease:
    raw = msg.lease_time
    if raw == INFINITE_LEASE:
        lease_time = t1 = t2 = math.inf
    else:
        lease_time = float(raw)
        t2 = msg.rebinding_time
        if t2 is None or not 0 < t2 <= lease_time:
            t2 = _T2_FRACTION * lease_time
        t1 = msg.renewal_time
        if t1 is None or not 0 < t1 <= t2:
            t1 = min(_T1_FRACTION * lease_time, t2)
    mtu = msg.interface_mtu
    return DhcpLease(
        msg.yiaddr, _prefix_length(msg), server_id, acquired_at, lease_time, float(t1),
        float(t2), msg.routers, msg.dns_servers, msg.domain_name,
        mtu if mtu is not None and mtu >= _MIN_MTU else None)


@attrs.define(slots=True)
class DhcpClientMachine:
    """One client on one interface; see the module docstring."""

    mac: bytes
    rng: random.Random
    config: DhcpClientConfig = attrs.field(factory=DhcpClientConfig)

    state: DhcpState = attrs.field(init=False, default=DhcpState.STOPPED)
    #: The lease announced with LeaseAcquired and not yet lost.
    lease: DhcpLease | None = attrs.field(init=False, default=None)
    _actions: deque = attrs.field(init=False, factory=deque)
    _xid: int = attrs.field(init=False, default=0)
    #: When the current exchange began (for 'secs', RFC 2131 table 5).
    _exchange_start: float = attrs.field(init=False, default=0.0)
    #: When the current REQUEST was first sent (where a lease starts).
    _request_sent_at: float = attrs.field(init=False, default=0.0)
    #: Retransmissions so far in the current exchange.
    _attempt: int = attrs.field(init=False, default=0)
    #: The state's own timer: start-up wait, retransmission or give-up.
    _timer: float = attrs.field(init=False, default=math.inf)
    #: SELECTING's choice: (offered address, server id).
    _offer: tuple[IPv4Address, IPv4Address] | None = attrs.field(init=False, default=None)
    #: The address asked for by INIT-REBOOT.
    _remembered: IPv4Address | None = attrs.field(init=False, default=None)
    #: The ACKed lease under probe (CHECKING).
    _pending: DhcpLease | None = attrs.field(init=False, default=None)
    _naks: int = attrs.field(init=False, default=0)
    _conflicts: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self):
        if len(self.mac) != 6:
            raise ValueError("mac must be 6 bytes")

    # --- outputs --------------------------------------------------------------

    def pop_actions(self) -> list:
        """The actions queued since the last call, oldest first."""
        actions = list(self._actions)
        self._actions.clear()
        return actions

    @property
    def next_deadline(self) -> float:
        lease = self.lease
        state = self.state
        if state is DhcpState.BOUND:
            return min(lease.t1_at, lease.t2_at, lease.expires_at)
        if state is DhcpState.RENEWING:
            return min(self._timer, lease.t2_at, lease.expires_at)
        if state is DhcpState.REBINDING:
            return min(self._timer, lease.expires_at)
        return self._timer

    # --- inputs ---------------------------------------------------------------

    def start(self, now: float, remembered_address: IPv4Address | None = None) -> None:
        """Begin (or begin again). With ``remembered_address``, try to keep
        it first (INIT-REBOOT, RFC 2131 3.2), else discover after the
        start-up wait."""
        if self.lease is not None:
            self._lose("restarted")
        self._naks = self._conflicts = 0
        self._offer = self._pending = None
        if remembered_address is not None:
            self.state = DhcpState.INIT_REBOOT
            self._remembered = remembered_address
            self._begin_exchange(DhcpState.REBOOTING, now)
        else:
            self._enter_init(now, self.rng.uniform(*self.config.initial_delay))

    def on_message(self, msg: DhcpMessage, now: float) -> None:
        """A parsed message that arrived on port 68. Raises WireError (and
        changes nothing) when it is not for us or not wanted now."""
        if msg.op != BOOTREPLY:
            raise WireError("dhcp.not_reply")
        if msg.htype != HTYPE_ETHERNET or msg.chaddr != self.mac:
            raise WireError("dhcp.other_chaddr")
        if msg.xid != self._xid:
            raise WireError("dhcp.other_xid")
        kind = msg.message_type
        if kind is None:
            raise WireError("dhcp.not_dhcp")  # a plain BOOTP reply
        state = self.state
        if kind == DHCPOFFER and state is DhcpState.SELECTING:
            self._on_offer(msg, now)
        elif kind == DHCPACK and state in _WAITING_FOR_ACK:
            self._on_ack(msg, now)
        elif kind == DHCPNAK and state in _WAITING_FOR_ACK:
            self._on_nak(msg, now)
        else:
            raise WireError("dhcp.unexpected", f"type {kind} in {state.value}")

    def on_timer(self, now: float) -> None:
        """Do whatever is due at ``now``; harmless when nothing is."""
        while self.next_deadline <= now:
            before = (self.state, self._timer)
            self._fire(now)
            if (self.state, self._timer) == before:
                break  # nothing moved: do not spin

    def on_probe_result(self, conflict: bool, now: float) -> None:
        """The answer to ``ProbeAddress``; ignored unless still CHECKING."""
        if self.state is not DhcpState.CHECKING:
            return
        lease = self._pending
        self._pending = None
        if not conflict:
            self._bind(lease)
            return
        # RFC 2131 3.1 step 5: DECLINE, broadcast (4.4.4), and restart
        # after a while.
        self._xid = self.rng.getrandbits(32)
        self._send(DhcpMessage.decline(self._xid, self.mac, lease.ip, lease.server_id,
                                       client_id=self.config.client_id),
                   LIMITED_BROADCAST)
        self._conflicts += 1
        delay = (self.config.decline_delay if self._conflicts < _MAX_CONFLICTS
                 else max(self.config.decline_delay, _RATE_LIMIT_INTERVAL))
        self._enter_init(now, delay)

    def release(self, now: float) -> None:
        """Give the lease back, if there is one (RFC 2131 4.4.6), and stop."""
        lease = self.lease
        if lease is not None:
            self._xid = self.rng.getrandbits(32)
            self._send(DhcpMessage.release(self._xid, self.mac, lease.ip,
                                           lease.server_id, client_id=self.config.client_id),
                       lease.server_id)
            self._lose("released")
        self.state = DhcpState.STOPPED
        self._timer = math.inf
        self._offer = self._pending = self._remembered = None

    # --- transitions ----------------------------------------------------------

    def _fire(self, now: float) -> None:
        """The earliest due event; runs only when ``next_deadline <= now``."""
        state = self.state
        lease = self.lease
        if state in _HOLDING_LEASE:
            if now >= lease.expires_at:
                self._lose("expired")  # RFC 2131 4.4.5
                self._enter_init(now, 0.0)
                return
            if state is not DhcpState.REBINDING and now >= lease.t2_at:
                self._begin_exchange(DhcpState.REBINDING, now)
                return
            if state is DhcpState.BOUND:  # T1 is due
                self._begin_exchange(DhcpState.RENEWING, now)
                return
        # The state's own timer is due.
        if state is DhcpState.INIT:
            self._begin_exchange(DhcpState.SELECTING, now)
        elif state in (DhcpState.REQUESTING, DhcpState.REBOOTING) \
                and self._attempt + 1 >= self.config.request_attempts:
            self._enter_init(now, 0.0)  # no answer: start over (RFC 2131 4.4.1)
        else:
            self._attempt += 1
            self._transmit(now)

    def _begin_exchange(self, state: DhcpState, now: float) -> None:
        """A new transaction: fresh xid (RFC 2131 4.1), first transmission."""
        self.state = state
        self._xid = self.rng.getrandbits(32)
        self._attempt = 0
        self._exchange_start = self._request_sent_at = now
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        """Send (or resend) the current state's message and arm the timer."""
        cfg = self.config
        state = self.state
        secs = min(int(now - self._exchange_start), _MAX_SECS)
        common = dict(secs=secs, client_id=cfg.client_id, hostname=cfg.hostname,
                      parameters=cfg.parameters)
        destination = LIMITED_BROADCAST
        if state is DhcpState.SELECTING:
            msg = DhcpMessage.discover(self._xid, self.mac, broadcast=cfg.broadcast_flag,
                                       **common)
        elif state is DhcpState.REQUESTING:
            offered, server = self._offer
            msg = DhcpMessage.request_selecting(self._xid, self.mac, offered, server,
                                                broadcast=cfg.broadcast_flag, **common)
        elif state is DhcpState.REBOOTING:
            msg = DhcpMessage.request_init_reboot(self._xid, self.mac, self._remembered,
                                                  broadcast=cfg.broadcast_flag, **common)
        elif state is DhcpState.RENEWING:
            msg = DhcpMessage.request_renewing(self._xid, self.mac, self.lease.ip,
                                               **common)
            destination = self.lease.server_id  # RFC 2131 4.4.5: unicast
        else:
            msg = DhcpMessage.request_rebinding(self._xid, self.mac, self.lease.ip,
                                                **common)
        self._send(msg, destination)
        if state is DhcpState.RENEWING:
            # RFC 2131 4.4.5: half the time left to T2 (then to expiry), at
            # least 60 s.
            self._timer = now + max((self.lease.t2_at - now) / 2, _MIN_RENEW_INTERVAL)
        elif state is DhcpState.REBINDING:
            self._timer = now + max((self.lease.expires_at - now) / 2, _MIN_RENEW_INTERVAL)
        else:
            self._timer = now + self._backoff()

    def _backoff(self) -> float:
        """RFC 2131 4.1: 4, 8, 16, 32, 64, 64... s, each +-1 s uniform."""
        base = min(_FIRST_TIMEOUT * 2 ** min(self._attempt, 4), _MAX_TIMEOUT)
        return base + self.rng.uniform(-_JITTER, _JITTER)

    def _on_offer(self, msg: DhcpMessage, now: float) -> None:
        if not _usable(msg.yiaddr):
            raise WireError("dhcp.bad_yiaddr", str(msg.yiaddr))
        if msg.server_id is None:
            raise WireError("dhcp.no_server_id")  # RFC 2131 table 3: MUST
        # The first good offer wins; the REQUEST keeps the xid (table 5) and
        # the 'secs' count of the DISCOVER.
        self._offer = (msg.yiaddr, msg.server_id)
        self.state = DhcpState.REQUESTING
        self._attempt = 0
        self._request_sent_at = now
        self._transmit(now)

    def _on_ack(self, msg: DhcpMessage, now: float) -> None:
        state = self.state
        server_id = msg.server_id
        if state is DhcpState.REQUESTING:
            if server_id is not None and server_id != self._offer[1]:
                raise WireError("dhcp.other_server")
            server_id = self._offer[1]
        elif server_id is None and self.lease is not None:
            server_id = self.lease.server_id
        if server_id is None:
            raise WireError("dhcp.no_server_id")
        if not _usable(msg.yiaddr):
            raise WireError("dhcp.bad_yiaddr", str(msg.yiaddr))
        if msg.lease_time is None:
            raise WireError("dhcp.no_lease_time")  # RFC 2131 table 3: MUST
        if msg.lease_time == 0:
            raise WireError("dhcp.bad_lease_time")
        lease = _lease_from(msg, self._request_sent_at, server_id)
        if state in _HOLDING_LEASE:
            if lease.ip == self.lease.ip:
                self.lease = lease
                self.state = DhcpState.BOUND
                self._timer = math.inf
                self._naks = 0
                self._actions.append(LeaseRenewed(lease))
                return
            self._lose("changed")
        if self.config.probe:
            self.state = DhcpState.CHECKING
            self._timer = math.inf
            self._pending = lease
            self._actions.append(ProbeAddress(lease.ip))
        else:
            self._bind(lease)

    def _on_nak(self, msg: DhcpMessage, now: float) -> None:
        if self.state is DhcpState.REQUESTING and msg.server_id is not None \
                and msg.server_id != self._offer[1]:
            raise WireError("dhcp.other_server")
        if self.lease is not None:
            self._lose("nak")
        # RFC 2131 3.1 step 5, 3.2 step 3, 4.4.5: back to INIT.
        delay = 0.0 if self._naks == 0 else min(2.0 ** (self._naks - 1), _MAX_NAK_DELAY)
        self._naks += 1
        self._enter_init(now, delay)

    def _bind(self, lease: DhcpLease) -> None:
        self.lease = lease
        self.state = DhcpState.BOUND
        self._timer = math.inf
        self._naks = self._conflicts = 0
        self._actions.append(LeaseAcquired(lease))

    def _lose(self, reason: str) -> None:
        self._actions.append(LeaseLost(self.lease, reason))
        self.lease = None

    def _enter_init(self, now: float, delay: float) -> None:
        self.state = DhcpState.INIT
        self._offer = self._pending = self._remembered = None
        if delay <= 0:
            self._begin_exchange(DhcpState.SELECTING, now)
        else:
            self._timer = now + delay

    def _send(self, msg: DhcpMessage, destination: IPv4Address) -> None:
        self._actions.append(SendMessage(msg, destination))


_WAITING_FOR_ACK = frozenset((DhcpState.REQUESTING, DhcpState.REBOOTING, DhcpState.RENEWING,
                              DhcpState.REBINDING))
_HOLDING_LEASE = frozenset((DhcpState.BOUND, DhcpState.RENEWING, DhcpState.REBINDING))
