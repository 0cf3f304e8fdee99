"""The DHCP client state machine (RFC 2131 4.4), driven with explicit times.

Every server message goes through build_dhcp/parse_dhcp first, as it would
off the wire. Randomness comes from seeded ``random.Random`` objects, so
every run sends the same messages at the same times.
"""

import math
import os
import random
from ipaddress import IPv4Address, IPv4Interface

import attrs
import pytest

from trionet.dhcp.machine import (
    LIMITED_BROADCAST,
    DhcpClientConfig,
    DhcpClientMachine,
    DhcpLease,
    DhcpState,
    LeaseAcquired,
    LeaseLost,
    LeaseRenewed,
    ProbeAddress,
    SendMessage,
)
from trionet.wire.dhcp import (
    BOOTREPLY,
    BOOTREQUEST,
    DEFAULT_PARAMETER_REQUEST_LIST,
    DHCPACK,
    DHCPDECLINE,
    DHCPDISCOVER,
    DHCPNAK,
    DHCPOFFER,
    DHCPRELEASE,
    DHCPREQUEST,
    DhcpMessage,
    build_dhcp,
    parse_dhcp,
)
from trionet.wire.errors import WireError

MAC = bytes.fromhex("020000000001")
OTHER_MAC = bytes.fromhex("020000000002")
SERVER = IPv4Address("10.77.0.1")
OTHER_SERVER = IPv4Address("10.77.0.2")
OFFERED = IPv4Address("10.77.0.55")
ZERO = IPv4Address(0)
LEASE, T1, T2 = 3600, 1800, 3150


def machine(seed: int = 1, **config) -> DhcpClientMachine:
    config.setdefault("initial_delay", (0.0, 0.0))
    return DhcpClientMachine(MAC, random.Random(seed), DhcpClientConfig(**config))


def reply(request: DhcpMessage, kind: int, *, yiaddr=OFFERED, server=SERVER, lease=LEASE,
          t1=T1, t2=T2, xid=None, chaddr=None, op=BOOTREPLY, extra=()) -> DhcpMessage:
    """What a server would answer to ``request``, through the codec."""
    options = [(53, bytes([kind]))] if kind else []
    if server is not None:
        options.append((54, server.packed))
    if lease is not None:
        options.append((51, lease.to_bytes(4, "big")))
    if t1 is not None:
        options.append((58, t1.to_bytes(4, "big")))
    if t2 is not None:
        options.append((59, t2.to_bytes(4, "big")))
    if kind in (DHCPOFFER, DHCPACK):
        options += [(1, bytes.fromhex("ffffff00")), (3, SERVER.packed),
                    (6, SERVER.packed + OTHER_SERVER.packed), (15, b"trionet.test"),
                    (26, (1400).to_bytes(2, "big"))]
    options += list(extra)
    msg = DhcpMessage(op, request.xid if xid is None else xid,
                      request.chaddr if chaddr is None else chaddr, options,
                      flags=request.flags, yiaddr=yiaddr, siaddr=SERVER)
    return parse_dhcp(build_dhcp(msg))


def nak(request: DhcpMessage, **kwargs) -> DhcpMessage:
    return reply(request, DHCPNAK, yiaddr=ZERO, lease=None, t1=None, t2=None, **kwargs)


def only_send(m: DhcpClientMachine) -> SendMessage:
    actions = m.pop_actions()
    assert len(actions) == 1 and isinstance(actions[0], SendMessage), actions
    return actions[0]


def check_discover(send: SendMessage) -> DhcpMessage:
    msg = send.message
    assert send.destination == LIMITED_BROADCAST and send.broadcast
    assert (msg.op, msg.message_type, msg.chaddr) == (BOOTREQUEST, DHCPDISCOVER, MAC)
    assert msg.broadcast and msg.ciaddr == ZERO
    assert msg.server_id is None and msg.requested_ip is None
    assert msg.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    return msg


def check_request(send: SendMessage, *, ciaddr=ZERO, requested=None, server=None,
                  destination=LIMITED_BROADCAST) -> DhcpMessage:
    """RFC 2131 4.3.2: which of ciaddr, requested IP and server id."""
    msg = send.message
    assert (msg.op, msg.message_type, msg.chaddr) == (BOOTREQUEST, DHCPREQUEST, MAC)
    assert send.destination == destination
    assert (msg.ciaddr, msg.requested_ip, msg.server_id) == (ciaddr, requested, server)
    assert msg.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    return msg


def to_bound(m: DhcpClientMachine, *, start=0.0, offer_at=1.0, ack_at=1.5,
             probed_at=3.0) -> DhcpLease:
    """start -> DISCOVER -> OFFER -> REQUEST -> ACK -> probe -> bound."""
    m.start(start)
    discover = check_discover(only_send(m))
    m.on_message(reply(discover, DHCPOFFER), offer_at)
    request = check_request(only_send(m), requested=OFFERED, server=SERVER)
    m.on_message(reply(request, DHCPACK), ack_at)
    assert m.pop_actions() == [ProbeAddress(OFFERED)]
    m.on_probe_result(False, probed_at)
    [acquired] = m.pop_actions()
    assert isinstance(acquired, LeaseAcquired)
    assert m.state is DhcpState.BOUND and m.lease == acquired.lease
    return acquired.lease


# --- acquiring a lease -------------------------------------------------------------

def test_happy_path():
    m = machine()
    assert m.state is DhcpState.STOPPED and m.next_deadline == math.inf
    m.start(0.0)
    assert m.state is DhcpState.SELECTING
    discover = check_discover(only_send(m))
    assert discover.secs == 0
    assert 3.0 <= m.next_deadline <= 5.0  # first retransmission, 4 +- 1 s

    m.on_message(reply(discover, DHCPOFFER), 2.0)
    assert m.state is DhcpState.REQUESTING
    request = check_request(only_send(m), requested=OFFERED, server=SERVER)
    # Table 5: the xid of the offer; 'secs' counts from the DISCOVER.
    assert request.xid == discover.xid and request.secs == 2 and request.broadcast
    assert 5.0 <= m.next_deadline <= 7.0

    m.on_message(reply(request, DHCPACK), 2.5)
    assert m.state is DhcpState.CHECKING
    assert m.pop_actions() == [ProbeAddress(OFFERED)]
    assert m.next_deadline == math.inf and m.lease is None

    m.on_probe_result(False, 4.0)
    [acquired] = m.pop_actions()
    assert acquired == LeaseAcquired(DhcpLease(
        OFFERED, 24, SERVER, 2.0, 3600.0, 1800.0, 3150.0, (SERVER,), (SERVER, OTHER_SERVER),
        "trionet.test", 1400))
    lease = acquired.lease
    # The lease runs from when the REQUEST went out (RFC 2131 4.4.1).
    assert (lease.t1_at, lease.t2_at, lease.expires_at) == (1802.0, 3152.0, 3602.0)
    assert lease.interface == IPv4Interface("10.77.0.55/24") and lease.router == SERVER
    assert m.state is DhcpState.BOUND and m.lease == lease
    assert m.next_deadline == 1802.0
    m.on_timer(1801.9)
    assert m.pop_actions() == [] and m.state is DhcpState.BOUND


def test_discover_retransmission_backoff():
    # RFC 2131 4.1: 4, 8, 16, 32, 64, 64 ... s, each +-1 s uniform random.
    m = machine(seed=7)
    m.start(0.0)
    first = check_discover(only_send(m))
    now, intervals = 0.0, []
    for base in (4, 8, 16, 32, 64, 64, 64):
        deadline = m.next_deadline
        intervals.append(deadline - now)
        assert base - 1 <= deadline - now <= base + 1
        m.on_timer(deadline - 0.01)
        assert m.pop_actions() == []  # not yet
        m.on_timer(deadline)
        now = deadline
        again = check_discover(only_send(m))
        assert again.xid == first.xid and again.secs == int(now)
        assert m.state is DhcpState.SELECTING
    offsets = [interval - base for interval, base in zip(intervals, (4, 8, 16, 32, 64, 64, 64))]
    assert len({round(o, 6) for o in offsets}) > 1  # the jitter is random, not fixed


def deadlines(seed: int) -> list[float]:
    m = machine(seed=seed)
    m.start(0.0)
    out = []
    for _ in range(5):
        out.append(m.next_deadline)
        m.on_timer(m.next_deadline)
    out.append(m.pop_actions()[-1].message.xid)
    return out


def test_randomness_is_seeded():
    assert deadlines(3) == deadlines(3)
    assert deadlines(3) != deadlines(4)


def test_no_global_randomness(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("global randomness used")
    for name in ("random", "uniform", "getrandbits", "randint", "randrange", "choice"):
        monkeypatch.setattr(random, name, forbidden)
    monkeypatch.setattr(os, "urandom", forbidden)
    m = machine(initial_delay=(1.0, 10.0))
    m.start(0.0)
    m.on_timer(m.next_deadline)
    to_bound_from_selecting(m, 20.0)
    m.on_timer(m.lease.t1_at)
    m.on_timer(m.next_deadline)
    assert m.state is DhcpState.RENEWING


def to_bound_from_selecting(m: DhcpClientMachine, now: float) -> DhcpLease:
    discover = [a for a in m.pop_actions() if isinstance(a, SendMessage)][-1].message
    m.on_message(reply(discover, DHCPOFFER), now)
    request = only_send(m).message
    m.on_message(reply(request, DHCPACK), now)
    m.pop_actions()
    m.on_probe_result(False, now)
    [acquired] = m.pop_actions()
    return acquired.lease


def test_offers_lost_then_one_arrives():
    m = machine(seed=2)
    m.start(0.0)
    only_send(m)
    for _ in range(3):
        m.on_timer(m.next_deadline)
    sends = m.pop_actions()
    assert len(sends) == 3  # three retransmissions went out, all lost
    discover = check_discover(sends[-1])
    now = m.next_deadline - 1.0
    assert now > 4 + 8 + 16 + 32 - 4 - 1
    m.on_message(reply(discover, DHCPOFFER), now)
    request = check_request(only_send(m), requested=OFFERED, server=SERVER)
    assert request.secs == int(now)
    m.on_message(reply(request, DHCPACK), now + 0.1)
    m.pop_actions()
    m.on_probe_result(False, now + 2)
    [acquired] = m.pop_actions()
    assert acquired.lease.acquired_at == now


def test_initial_delay():
    # Default: a short random wait in INIT before the first DISCOVER.
    m = DhcpClientMachine(MAC, random.Random(5))
    m.start(10.0)
    assert m.state is DhcpState.INIT and m.pop_actions() == []
    assert 10.0 <= m.next_deadline <= 11.0
    # The RFC 2131 4.4.1 wait, when asked for.
    m = machine(seed=5, initial_delay=(1.0, 10.0))
    m.start(10.0)
    assert m.state is DhcpState.INIT and m.pop_actions() == []
    deadline = m.next_deadline
    assert 11.0 <= deadline <= 20.0
    m.on_timer(deadline - 0.5)
    assert m.pop_actions() == [] and m.state is DhcpState.INIT
    m.on_timer(deadline)
    discover = check_discover(only_send(m))
    assert discover.secs == 0 and m.state is DhcpState.SELECTING


def test_config_validation():
    with pytest.raises(ValueError):
        DhcpClientConfig(decline_delay=9.9)  # RFC 2131 3.1 step 5: at least 10 s
    with pytest.raises(ValueError):
        DhcpClientConfig(initial_delay=(2.0, 1.0))
    with pytest.raises(ValueError):
        DhcpClientConfig(request_attempts=0)
    with pytest.raises(ValueError):
        DhcpClientMachine(b"\x02\x00", random.Random(1))


def test_request_retransmission_then_give_up():
    m = machine(seed=3)
    m.start(0.0)
    discover = only_send(m).message
    m.on_message(reply(discover, DHCPOFFER), 1.0)
    first = check_request(only_send(m), requested=OFFERED, server=SERVER)
    now = 1.0
    for base in (4, 8, 16):
        assert base - 1 <= m.next_deadline - now <= base + 1
        now = m.next_deadline
        m.on_timer(now)
        again = check_request(only_send(m), requested=OFFERED, server=SERVER)
        assert again.xid == first.xid and m.state is DhcpState.REQUESTING
    # The fourth transmission went unanswered: restart from INIT.
    assert 31 <= m.next_deadline - now <= 33
    now = m.next_deadline
    m.on_timer(now)
    restart = check_discover(only_send(m))
    assert restart.xid != first.xid and restart.secs == 0
    assert m.state is DhcpState.SELECTING
    # An ACK for the abandoned request is now for another transaction.
    with pytest.raises(WireError) as info:
        m.on_message(reply(first, DHCPACK), now + 1)
    assert info.value.reason == "dhcp.other_xid"


def test_request_attempts_configurable():
    m = machine(request_attempts=1)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 1.0)
    only_send(m)
    m.on_timer(m.next_deadline)
    check_discover(only_send(m))


# --- NAK ----------------------------------------------------------------------------------

def test_nak_while_requesting_restarts_with_growing_delay():
    m = machine()
    m.start(0.0)
    discover = only_send(m).message
    m.on_message(reply(discover, DHCPOFFER), 1.0)
    request = only_send(m).message
    m.on_message(nak(request), 1.5)
    # No lease was announced, so none is lost; a new DISCOVER at once.
    again = check_discover(only_send(m))
    assert again.xid != discover.xid and m.state is DhcpState.SELECTING
    now = 2.0
    for delay in (1.0, 2.0, 4.0):
        m.on_message(reply(again, DHCPOFFER), now)
        m.on_message(nak(only_send(m).message), now)
        assert m.pop_actions() == [] and m.state is DhcpState.INIT
        assert m.next_deadline == now + delay
        m.on_timer(now + delay)
        again = check_discover(only_send(m))
        now += delay + 1


def test_nak_from_another_server_ignored_while_requesting():
    m = machine()
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 1.0)
    request = only_send(m).message
    for message in (nak(request, server=OTHER_SERVER), reply(request, DHCPACK,
                                                             server=OTHER_SERVER)):
        with pytest.raises(WireError) as info:
            m.on_message(message, 1.5)
        assert info.value.reason == "dhcp.other_server"
        assert m.state is DhcpState.REQUESTING and m.pop_actions() == []


# --- renewing, rebinding, expiry -----------------------------------------------------------

def test_renew_at_t1_unicast_to_server():
    m = machine()
    lease = to_bound(m)  # acquired at 1.0
    assert m.next_deadline == lease.t1_at == 1801.0
    m.on_timer(1801.0)
    assert m.state is DhcpState.RENEWING
    send = only_send(m)
    renew = check_request(send, ciaddr=OFFERED, destination=SERVER)
    assert not send.broadcast and not renew.broadcast and renew.secs == 0
    # RFC 2131 4.4.5: half the time left to T2, at least 60 s.
    assert m.next_deadline == 1801.0 + (3151.0 - 1801.0) / 2
    now = m.next_deadline
    m.on_timer(now)
    again = check_request(only_send(m), ciaddr=OFFERED, destination=SERVER)
    assert again.xid == renew.xid and again.secs == int(now - 1801.0)
    assert m.next_deadline == now + (3151.0 - now) / 2

    m.on_message(reply(again, DHCPACK), now + 0.2)
    [renewed] = m.pop_actions()
    assert isinstance(renewed, LeaseRenewed)
    # The renewed lease runs from the first renewal REQUEST.
    assert renewed.lease == attrs.evolve(lease, acquired_at=1801.0)
    assert m.state is DhcpState.BOUND and m.lease == renewed.lease
    assert m.next_deadline == 1801.0 + T1


def test_renew_retransmission_floor_of_60_s():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    only_send(m)
    times = []
    while m.state is DhcpState.RENEWING:
        now = m.next_deadline
        times.append(now)
        m.on_timer(now)
        m.pop_actions()
    assert m.state is DhcpState.REBINDING
    gaps = [b - a for a, b in zip([lease.t1_at] + times, times)]
    # Halving: 675, 337.5, 168.75, 84.375, then the 60 s floor, which runs
    # past T2 (3151), so T2 comes first.
    assert gaps[:4] == [675.0, 337.5, 168.75, 84.375]
    assert times[-1] == lease.t2_at and gaps[-1] < 60
    assert all(g >= 60 for g in gaps[:-1])


def test_rebind_at_t2_broadcast_then_ack_from_any_server():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    renew = only_send(m).message
    m.on_timer(lease.t2_at)
    assert m.state is DhcpState.REBINDING
    rebind = check_request(only_send(m), ciaddr=OFFERED)  # broadcast
    assert rebind.xid != renew.xid
    assert not rebind.broadcast  # the client has an address now
    assert m.next_deadline == lease.t2_at + (lease.expires_at - lease.t2_at) / 2
    # A late ACK to the renewal is for the old transaction.
    with pytest.raises(WireError):
        m.on_message(reply(renew, DHCPACK), lease.t2_at + 1)
    m.on_message(reply(rebind, DHCPACK, server=OTHER_SERVER), lease.t2_at + 1)
    [renewed] = m.pop_actions()
    assert isinstance(renewed, LeaseRenewed)
    assert renewed.lease.server_id == OTHER_SERVER  # renewals go there now
    assert renewed.lease.acquired_at == lease.t2_at
    m.on_timer(renewed.lease.t1_at)
    check_request(only_send(m), ciaddr=OFFERED, destination=OTHER_SERVER)


def test_rebinding_retransmits_then_lease_expires():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    m.on_timer(lease.t2_at)
    m.pop_actions()
    times = []
    while m.state is DhcpState.REBINDING:
        now = m.next_deadline
        times.append(now)
        m.on_timer(now)
        if m.state is DhcpState.REBINDING:
            check_request(only_send(m), ciaddr=OFFERED)
    assert times[0] == lease.t2_at + 225.0  # half of the 450 s left
    assert times[-1] == lease.expires_at
    assert times[-2] == times[-3] + 60.0  # the floor
    lost, discover = m.pop_actions()
    assert lost == LeaseLost(lease, "expired")
    check_discover(discover)
    assert m.state is DhcpState.SELECTING and m.lease is None


def test_late_timer_goes_straight_to_expiry():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.expires_at + 100)
    lost, discover = m.pop_actions()  # no renewal REQUEST first
    assert lost == LeaseLost(lease, "expired")
    check_discover(discover)


def test_late_timer_past_t2_skips_renewing():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t2_at + 1)
    assert m.state is DhcpState.REBINDING
    check_request(only_send(m), ciaddr=OFFERED)  # broadcast, no unicast first


@pytest.mark.parametrize("rebinding", [False, True])
def test_nak_while_renewing_or_rebinding_loses_lease(rebinding):
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    request = only_send(m).message
    if rebinding:
        m.on_timer(lease.t2_at)
        request = only_send(m).message
        assert m.state is DhcpState.REBINDING
    m.on_message(nak(request, server=OTHER_SERVER if rebinding else SERVER), 3300.0)
    lost, discover = m.pop_actions()
    assert lost == LeaseLost(lease, "nak")
    check_discover(discover)
    assert m.state is DhcpState.SELECTING and m.lease is None


def test_renewal_with_another_address():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    renew = only_send(m).message
    other = IPv4Address("10.77.0.56")
    m.on_message(reply(renew, DHCPACK, yiaddr=other), lease.t1_at + 1)
    assert m.pop_actions() == [LeaseLost(lease, "changed"), ProbeAddress(other)]
    assert m.state is DhcpState.CHECKING
    m.on_probe_result(False, lease.t1_at + 2)
    [acquired] = m.pop_actions()
    assert acquired.lease.ip == other and acquired.lease.acquired_at == lease.t1_at


# --- lease values --------------------------------------------------------------------------

def lease_from_ack(**kwargs) -> DhcpLease:
    m = machine(probe=False)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 0.0)
    m.on_message(reply(only_send(m).message, DHCPACK, **kwargs), 0.0)
    [acquired] = m.pop_actions()
    assert isinstance(acquired, LeaseAcquired)  # probe=False: no ProbeAddress
    return acquired.lease


def test_t1_t2_defaults():
    lease = lease_from_ack(lease=1000, t1=None, t2=None)
    assert (lease.lease_time, lease.t1, lease.t2) == (1000.0, 500.0, 875.0)
    # Inconsistent values are replaced (RFC 2131 4.4.5 asks T1 < T2 < lease).
    lease = lease_from_ack(lease=1000, t1=900, t2=800)
    assert (lease.t1, lease.t2) == (500.0, 800.0)
    lease = lease_from_ack(lease=1000, t1=0, t2=2000)
    assert (lease.t1, lease.t2) == (500.0, 875.0)


def test_infinite_lease():
    m = machine(probe=False)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 0.0)
    m.on_message(reply(only_send(m).message, DHCPACK, lease=0xFFFFFFFF), 0.0)
    [acquired] = m.pop_actions()
    assert acquired.lease.lease_time == math.inf
    assert m.next_deadline == math.inf
    m.on_timer(1e12)
    assert m.pop_actions() == [] and m.state is DhcpState.BOUND


def test_mask_and_mtu_fallbacks():
    def with_mask(mask_hex, mtu):
        options = [(1, bytes.fromhex(mask_hex)), (26, mtu.to_bytes(2, "big"))]
        m = machine(probe=False)
        m.start(0.0)
        m.on_message(reply(only_send(m).message, DHCPOFFER), 0.0)
        request = only_send(m).message
        msg = reply(request, DHCPACK)
        msg = attrs.evolve(msg, options=[o for o in msg.options if o[0] not in (1, 26)]
                           + options)
        m.on_message(msg, 0.0)
        return m.pop_actions()[0].lease
    assert with_mask("fffffff0", 1500).prefix_length == 28
    assert with_mask("fffffff0", 1500).mtu == 1500
    # Not contiguous: the classful default (10/8); an MTU under 68 is ignored.
    lease = with_mask("ff00ff00", 60)
    assert lease.prefix_length == 8 and lease.mtu is None
    # No mask at all: classful too (172.16/12 is class B).
    m = machine(probe=False)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER, yiaddr=IPv4Address("172.16.0.9")), 0.0)
    ack = reply(only_send(m).message, DHCPACK, yiaddr=IPv4Address("172.16.0.9"))
    m.on_message(attrs.evolve(ack, options=[o for o in ack.options if o[0] != 1]), 0.0)
    assert m.pop_actions()[0].lease.interface == IPv4Interface("172.16.0.9/16")


def test_ack_without_server_id_uses_the_offer_s():
    m = machine(probe=False)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 1.0)
    m.on_message(reply(only_send(m).message, DHCPACK, server=None), 1.5)
    [acquired] = m.pop_actions()
    assert acquired.lease.server_id == SERVER


# --- probing and DECLINE ------------------------------------------------------------------

def test_probe_conflict_declines_and_waits():
    m = machine()
    m.start(0.0)
    discover = only_send(m).message
    m.on_message(reply(discover, DHCPOFFER), 1.0)
    request = only_send(m).message
    m.on_message(reply(request, DHCPACK), 1.5)
    assert m.pop_actions() == [ProbeAddress(OFFERED)]
    m.on_probe_result(True, 3.0)
    send = only_send(m)
    decline = send.message
    assert send.destination == LIMITED_BROADCAST
    assert (decline.message_type, decline.ciaddr, decline.requested_ip, decline.server_id) == \
        (DHCPDECLINE, ZERO, OFFERED, SERVER)
    assert decline.parameter_request_list == () and decline.xid != request.xid
    assert m.lease is None and m.state is DhcpState.INIT
    # RFC 2131 3.1 step 5: at least ten seconds before starting again.
    assert m.next_deadline == 13.0
    m.on_timer(12.99)
    assert m.pop_actions() == []
    m.on_timer(13.0)
    check_discover(only_send(m))
    assert m.state is DhcpState.SELECTING
    # The late ACK of the declined transaction is ignored.
    with pytest.raises(WireError):
        m.on_message(reply(request, DHCPACK), 13.5)


def test_repeated_conflicts_rate_limited():
    # RFC 5227 2.1.1: after 10 conflicts, one attempt a minute.
    m = machine()
    m.start(0.0)
    now = 0.0
    delays = []
    for _ in range(12):
        discover = only_send(m).message
        m.on_message(reply(discover, DHCPOFFER), now)
        m.on_message(reply(only_send(m).message, DHCPACK), now)
        m.pop_actions()
        m.on_probe_result(True, now)
        assert only_send(m).message.message_type == DHCPDECLINE
        delays.append(m.next_deadline - now)
        now = m.next_deadline
        m.on_timer(now)
    assert delays == [10.0] * 9 + [60.0] * 3


def test_probe_result_outside_checking_ignored():
    m = machine()
    m.start(0.0)
    only_send(m)
    m.on_probe_result(True, 1.0)
    assert m.pop_actions() == [] and m.state is DhcpState.SELECTING


def test_without_probe():
    m = machine(probe=False)
    m.start(0.0)
    m.on_message(reply(only_send(m).message, DHCPOFFER), 1.0)
    m.on_message(reply(only_send(m).message, DHCPACK), 1.5)
    [acquired] = m.pop_actions()
    assert isinstance(acquired, LeaseAcquired) and m.state is DhcpState.BOUND


# --- INIT-REBOOT ---------------------------------------------------------------------------

def test_init_reboot_ack():
    m = machine()
    m.start(0.0, remembered_address=OFFERED)
    assert m.state is DhcpState.REBOOTING
    # RFC 2131 4.3.2: requested IP, no server id, ciaddr zero, broadcast.
    request = check_request(only_send(m), requested=OFFERED)
    assert request.broadcast
    assert 3.0 <= m.next_deadline <= 5.0
    m.on_message(reply(request, DHCPACK), 0.5)
    assert m.pop_actions() == [ProbeAddress(OFFERED)]
    m.on_probe_result(False, 2.0)
    [acquired] = m.pop_actions()
    assert acquired.lease.ip == OFFERED and acquired.lease.server_id == SERVER
    assert acquired.lease.acquired_at == 0.0 and m.state is DhcpState.BOUND


def test_init_reboot_nak():
    m = machine()
    m.start(0.0, remembered_address=IPv4Address("10.99.99.99"))
    request = check_request(only_send(m), requested=IPv4Address("10.99.99.99"))
    m.on_message(nak(request), 0.5)
    # Never announced, so nothing is lost: straight to DISCOVER.
    check_discover(only_send(m))
    assert m.state is DhcpState.SELECTING


def test_init_reboot_unanswered_falls_back_to_discover():
    m = machine()
    m.start(0.0, remembered_address=OFFERED)
    only_send(m)
    for _ in range(3):
        m.on_timer(m.next_deadline)
        check_request(only_send(m), requested=OFFERED)
    m.on_timer(m.next_deadline)
    check_discover(only_send(m))


def test_init_reboot_ack_without_server_id_ignored():
    m = machine()
    m.start(0.0, remembered_address=OFFERED)
    request = only_send(m).message
    with pytest.raises(WireError) as info:
        m.on_message(reply(request, DHCPACK, server=None), 0.5)
    assert info.value.reason == "dhcp.no_server_id"
    assert m.state is DhcpState.REBOOTING


def test_restart_while_bound():
    m = machine()
    lease = to_bound(m)
    m.start(100.0, remembered_address=lease.ip)
    lost, send = m.pop_actions()
    assert lost == LeaseLost(lease, "restarted")
    check_request(send, requested=lease.ip)
    assert m.state is DhcpState.REBOOTING and m.lease is None


# --- release ---------------------------------------------------------------------------------

def test_release():
    m = machine()
    lease = to_bound(m)
    m.release(100.0)
    send, lost = m.pop_actions()
    assert send.destination == SERVER  # unicast (RFC 2131 4.4.6)
    release = send.message
    assert (release.message_type, release.ciaddr, release.requested_ip, release.server_id) == \
        (DHCPRELEASE, OFFERED, None, SERVER)
    assert lost == LeaseLost(lease, "released")
    assert m.state is DhcpState.STOPPED and m.lease is None
    assert m.next_deadline == math.inf
    m.on_timer(1e9)
    assert m.pop_actions() == []


def test_release_while_renewing():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    renew = only_send(m).message
    m.release(lease.t1_at + 1)
    send, lost = m.pop_actions()
    assert send.message.message_type == DHCPRELEASE and lost.reason == "released"
    with pytest.raises(WireError):
        m.on_message(reply(renew, DHCPACK), lease.t1_at + 2)


def test_release_without_lease_just_stops():
    m = machine()
    m.start(0.0)
    discover = only_send(m).message
    m.release(1.0)
    assert m.pop_actions() == [] and m.state is DhcpState.STOPPED
    assert m.next_deadline == math.inf
    with pytest.raises(WireError):
        m.on_message(reply(discover, DHCPOFFER), 2.0)


# --- ignored messages -------------------------------------------------------------------------

def selecting() -> tuple[DhcpClientMachine, DhcpMessage]:
    m = machine()
    m.start(0.0)
    return m, only_send(m).message


@pytest.mark.parametrize("make, reason", [
    (lambda d: reply(d, DHCPOFFER, xid=d.xid ^ 1), "dhcp.other_xid"),
    (lambda d: reply(d, DHCPOFFER, chaddr=OTHER_MAC), "dhcp.other_chaddr"),
    (lambda d: reply(d, DHCPOFFER, op=BOOTREQUEST), "dhcp.not_reply"),
    (lambda d: attrs.evolve(reply(d, DHCPOFFER), htype=6), "dhcp.other_chaddr"),
    (lambda d: reply(d, 0), "dhcp.not_dhcp"),
    (lambda d: reply(d, DHCPACK), "dhcp.unexpected"),
    (lambda d: nak(d), "dhcp.unexpected"),
    (lambda d: reply(d, DHCPOFFER, yiaddr=ZERO), "dhcp.bad_yiaddr"),
    (lambda d: reply(d, DHCPOFFER, yiaddr=IPv4Address("255.255.255.255")), "dhcp.bad_yiaddr"),
    (lambda d: reply(d, DHCPOFFER, yiaddr=IPv4Address("224.0.0.1")), "dhcp.bad_yiaddr"),
    (lambda d: reply(d, DHCPOFFER, server=None), "dhcp.no_server_id"),
])
def test_ignored_while_selecting(make, reason):
    m, discover = selecting()
    deadline = m.next_deadline
    with pytest.raises(WireError) as info:
        m.on_message(make(discover), 1.0)
    assert info.value.reason == reason
    assert m.pop_actions() == []
    assert m.state is DhcpState.SELECTING and m.next_deadline == deadline
    # Still waiting for a real offer.
    m.on_message(reply(discover, DHCPOFFER), 1.5)
    check_request(only_send(m), requested=OFFERED, server=SERVER)


@pytest.mark.parametrize("make, reason", [
    (lambda r: reply(r, DHCPOFFER), "dhcp.unexpected"),
    (lambda r: reply(r, DHCPACK, lease=None), "dhcp.no_lease_time"),
    (lambda r: reply(r, DHCPACK, lease=0), "dhcp.bad_lease_time"),
    (lambda r: reply(r, DHCPACK, yiaddr=ZERO), "dhcp.bad_yiaddr"),
    (lambda r: reply(r, DHCPACK, chaddr=OTHER_MAC), "dhcp.other_chaddr"),
    (lambda r: reply(r, DHCPACK, xid=r.xid + 1), "dhcp.other_xid"),
])
def test_ignored_while_requesting(make, reason):
    m, discover = selecting()
    m.on_message(reply(discover, DHCPOFFER), 1.0)
    request = only_send(m).message
    with pytest.raises(WireError) as info:
        m.on_message(make(request), 1.5)
    assert info.value.reason == reason
    assert m.pop_actions() == [] and m.state is DhcpState.REQUESTING


def test_ignored_while_bound_and_checking():
    m = machine()
    m.start(0.0)
    discover = only_send(m).message
    m.on_message(reply(discover, DHCPOFFER), 1.0)
    request = only_send(m).message
    ack = reply(request, DHCPACK)
    m.on_message(ack, 1.5)
    m.pop_actions()
    with pytest.raises(WireError) as info:
        m.on_message(ack, 1.6)  # a duplicate while probing
    assert info.value.reason == "dhcp.unexpected" and m.state is DhcpState.CHECKING
    m.on_probe_result(False, 3.0)
    m.pop_actions()
    for message in (ack, nak(request)):
        with pytest.raises(WireError) as info:
            m.on_message(message, 4.0)
        assert info.value.reason == "dhcp.unexpected"
    assert m.state is DhcpState.BOUND and m.pop_actions() == []


def test_stopped_machine_ignores_everything():
    m = machine()
    probe = DhcpMessage(BOOTREPLY, 0, MAC, [(53, bytes([DHCPOFFER])), (54, SERVER.packed)],
                        yiaddr=OFFERED)
    with pytest.raises(WireError):
        m.on_message(probe, 0.0)
    m.on_timer(100.0)
    m.on_probe_result(False, 100.0)
    assert m.pop_actions() == [] and m.state is DhcpState.STOPPED


# --- wire round trip of every message the client sends ---------------------------------------

def test_every_sent_message_survives_the_codec():
    m = machine(client_id=b"\x01" + MAC, hostname="trionet")
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    m.on_timer(lease.t2_at)
    sent = [a for a in m.pop_actions() if isinstance(a, SendMessage)]
    m.release(lease.t2_at + 1)
    sent += [a for a in m.pop_actions() if isinstance(a, SendMessage)]
    assert [s.message.message_type for s in sent] == [DHCPREQUEST, DHCPREQUEST, DHCPRELEASE]
    for send in sent:
        assert parse_dhcp(build_dhcp(send.message)) == send.message
        assert send.message.client_id == b"\x01" + MAC  # RFC 2131 4.2: every message
        assert len(build_dhcp(send.message)) >= 300


def test_renewal_ack_without_server_id_keeps_the_server():
    m = machine()
    lease = to_bound(m)
    m.on_timer(lease.t1_at)
    m.on_message(reply(only_send(m).message, DHCPACK, server=None), lease.t1_at + 1)
    [renewed] = m.pop_actions()
    assert isinstance(renewed, LeaseRenewed) and renewed.lease.server_id == SERVER
