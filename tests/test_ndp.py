"""The IPv6 neighbour cache without I/O (RFC 4861 7.2, 7.3, appendix C):
every state and transition, driven with explicit times and a seeded
random.Random."""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import pytest

from trionet.interface.ndp import (NdpConfig, NeighbourActions, NeighbourCache,
                                   NeighbourState)

INCOMPLETE = NeighbourState.INCOMPLETE
REACHABLE = NeighbourState.REACHABLE
STALE = NeighbourState.STALE
DELAY = NeighbourState.DELAY
PROBE = NeighbourState.PROBE

IP = IPv6Address("fe80::9")
IP2 = IPv6Address("fe80::a")
IP3 = IPv6Address("2001:db8::3")
MAC = bytes.fromhex("020000000009")
MAC2 = bytes.fromhex("0200000000aa")


def cache(seed: int = 1, **config) -> NeighbourCache:
    return NeighbourCache(NdpConfig(**config), random.Random(seed))


def state(c: NeighbourCache, ip=IP, now=None):
    return c.entries(now).get(ip)


def reachable(c: NeighbourCache, now: float, ip=IP, mac=MAC) -> None:
    """An entry made REACHABLE through resolution and a solicited NA."""
    assert c.enqueue(ip, b"first", now) is True
    assert c.on_advertisement(ip, mac, solicited=True, override=False, router=False,
                              now=now) == [b"first"]
    assert state(c, ip) == (REACHABLE, mac)


def stale(c: NeighbourCache, now: float, ip=IP, mac=MAC) -> None:
    assert c.on_solicitation(ip, mac, now) == []
    assert state(c, ip) == (STALE, mac)


def delay(c: NeighbourCache, now: float, ip=IP, mac=MAC) -> None:
    stale(c, now, ip, mac)
    assert c.lookup(ip, now) == (mac, True)
    assert state(c, ip) == (DELAY, mac)


def probe(c: NeighbourCache, now: float, ip=IP, mac=MAC) -> None:
    delay(c, now, ip, mac)
    actions = c.poll(now + c.config.delay_first_probe_time)
    assert actions.unicast == ((ip, mac),)
    assert state(c, ip) == (PROBE, mac)


# --- resolution: INCOMPLETE (RFC 4861 7.2.2) -----------------------------------------


def test_rfc4861_7_2_2_first_packet_creates_incomplete_and_asks_for_a_solicitation():
    c = cache()
    assert c.lookup(IP, 0.0) == (None, False)
    assert c.enqueue(IP, b"p1", 0.0) is True  # send a multicast NS now
    assert c.enqueue(IP, b"p2", 0.2) is False  # one is outstanding
    assert c.entries() == {IP: (INCOMPLETE, None)}
    assert c.pending_addresses() == [IP]
    assert c.lookup(IP, 0.3) == (None, False)
    assert c.next_deadline() == 1.0  # RetransTimer after the first NS
    assert len(c) == 1


def test_rfc4861_7_2_2_incomplete_retransmits_then_fails_with_the_waiting_packets():
    c = cache()  # MAX_MULTICAST_SOLICIT 3, RetransTimer 1 s
    c.enqueue(IP, b"p1", 0.0)
    c.enqueue(IP, b"p2", 0.5)
    assert not c.poll(0.999)
    assert c.poll(1.0) == NeighbourActions(multicast=(IP,))
    assert c.next_deadline() == 2.0
    assert c.poll(2.0).multicast == (IP,)
    assert c.next_deadline() == 3.0
    # Three sent and RetransTimer passed after the last: failure, the
    # packets come back for ICMPv6 address unreachable.
    actions = c.poll(3.0)
    assert actions.failed == ((IP, [b"p1", b"p2"]),) and not actions.multicast
    assert c.entries() == {} and c.pending_addresses() == []
    assert c.next_deadline() == float("inf")
    # A new packet starts resolution afresh.
    assert c.enqueue(IP, b"p3", 4.0) is True


def test_rfc4861_7_2_5_solicited_advertisement_resolves_incomplete_to_reachable():
    c = cache()
    c.enqueue(IP, b"p1", 0.0)
    c.enqueue(IP, b"p2", 0.1)
    released = c.on_advertisement(IP, MAC, solicited=True, override=True, router=False, now=0.5)
    assert released == [b"p1", b"p2"]  # in order
    assert c.entries() == {IP: (REACHABLE, MAC)} and c.pending_addresses() == []
    assert c.lookup(IP, 0.6) == (MAC, False)
    assert c.next_deadline() == float("inf")  # REACHABLE ages without a timer
    assert not c.poll(10.0)


def test_rfc4861_7_2_5_unsolicited_advertisement_resolves_incomplete_to_stale():
    c = cache()
    c.enqueue(IP, b"p1", 0.0)
    assert c.on_advertisement(IP, MAC, solicited=False, override=True, router=True,
                              now=0.5) == [b"p1"]
    assert state(c) == (STALE, MAC)
    assert c.is_router(IP)  # IsRouter taken from the advertisement


def test_rfc4861_7_2_5_incomplete_ignores_an_advertisement_without_target_lladdr():
    c = cache()
    c.enqueue(IP, b"p1", 0.0)
    assert c.on_advertisement(IP, None, solicited=True, override=True, router=False,
                              now=0.5) == []
    assert state(c) == (INCOMPLETE, None)
    assert c.poll(1.0).multicast == (IP,)  # still resolving


def test_rfc4861_7_2_5_advertisement_without_an_entry_is_discarded():
    c = cache()
    assert c.on_advertisement(IP, MAC, solicited=False, override=True, router=True,
                              now=0.0) == []
    assert c.entries() == {} and len(c) == 0


# --- learning from solicitations (RFC 4861 7.2.3) ------------------------------------


def test_rfc4861_7_2_3_solicitation_creates_a_stale_entry():
    c = cache()
    assert c.on_solicitation(IP, MAC, 1.0) == []
    assert c.entries() == {IP: (STALE, MAC)}
    assert not c.is_router(IP)
    assert c.next_deadline() == float("inf")  # STALE has no timer


def test_rfc4861_7_2_3_appendix_c_solicitation_completes_incomplete_as_stale():
    c = cache()
    c.enqueue(IP, b"p1", 0.0)
    assert c.on_solicitation(IP, MAC, 0.2) == [b"p1"]
    assert state(c) == (STALE, MAC)
    assert c.pending_addresses() == [] and c.next_deadline() == float("inf")


def test_rfc4861_7_2_3_solicitation_with_a_new_mac_replaces_it_and_goes_stale():
    c = cache()
    reachable(c, 0.0)
    assert c.on_solicitation(IP, MAC2, 1.0) == []
    assert state(c) == (STALE, MAC2)


def test_rfc4861_7_2_3_solicitation_with_the_same_mac_changes_nothing():
    c = cache()
    reachable(c, 0.0)
    c.on_solicitation(IP, MAC, 1.0)
    assert state(c) == (REACHABLE, MAC)


def test_rfc4861_7_1_bad_sources_and_group_macs_are_ignored():
    c = cache()
    assert c.on_solicitation(IPv6Address("ff02::1"), MAC, 0.0) == []
    assert c.on_solicitation(IPv6Address("::"), MAC, 0.0) == []
    assert c.on_solicitation(IP, bytes.fromhex("333300000001"), 0.0) == []
    assert c.entries() == {} and c.ignored == 3
    with pytest.raises(ValueError):
        c.on_solicitation(IP, b"\x02\x00", 0.0)


def test_rfc4861_6_3_4_router_advertisement_records_the_router():
    c = cache()
    c.enqueue(IP, b"p1", 0.0)
    assert c.on_router(IP, MAC, 0.5) == [b"p1"]
    assert state(c) == (STALE, MAC) and c.is_router(IP)
    # Without a source link-layer option only the flag of an existing entry is set.
    c.on_solicitation(IP2, MAC2, 0.5)
    assert not c.is_router(IP2)
    assert c.on_router(IP2, None, 0.6) == []
    assert c.is_router(IP2) and state(c, IP2) == (STALE, MAC2)
    assert c.on_router(IP3, None, 0.6) == [] and IP3 not in c.entries()


# --- NUD (RFC 4861 7.3) -----------------------------------------------------------


def test_rfc4861_6_3_2_reachable_time_is_random_within_half_to_one_and_a_half_base():
    times = {cache(seed).reachable_time for seed in range(20)}
    assert all(15.0 <= t <= 45.0 for t in times)
    assert len(times) == 20  # drawn, not fixed
    assert cache(7).reachable_time == cache(7).reachable_time  # the seed decides


def test_rfc4861_7_3_3_reachable_becomes_stale_after_reachable_time():
    c = cache()
    reachable(c, 0.0)
    t = c.reachable_time
    assert c.lookup(IP, t - 0.001) == (MAC, False)
    assert state(c) == (REACHABLE, MAC)
    assert c.entries(t) == {IP: (STALE, MAC)}  # aged when seen with a time


def test_rfc4861_7_3_3_poll_ages_reachable_entries_too():
    c = cache()
    reachable(c, 0.0)
    assert not c.poll(c.reachable_time + 1)
    assert state(c) == (STALE, MAC)


def test_rfc4861_7_3_3_stale_entry_used_goes_to_delay_without_sending():
    c = cache()
    stale(c, 0.0)
    assert c.lookup(IP, 2.0) == (MAC, True)  # the timer moved; nothing to send
    assert state(c) == (DELAY, MAC)
    assert c.next_deadline() == 7.0  # DELAY_FIRST_PROBE_TIME
    assert c.lookup(IP, 3.0) == (MAC, False)  # already DELAY
    assert not c.poll(6.999)


def test_rfc4861_7_3_3_expired_reachable_entry_used_goes_to_delay():
    c = cache()
    reachable(c, 0.0)
    now = c.reachable_time + 1.0
    assert c.lookup(IP, now) == (MAC, True)
    assert state(c) == (DELAY, MAC)
    assert c.next_deadline() == now + 5.0


def test_rfc4861_7_3_3_delay_to_probe_to_reachable_on_a_solicited_advertisement():
    c = cache()
    delay(c, 0.0)
    actions = c.poll(5.0)
    assert actions == NeighbourActions(unicast=((IP, MAC),))  # to the cached MAC
    assert state(c) == (PROBE, MAC)
    assert c.next_deadline() == 6.0
    assert c.poll(6.0).unicast == ((IP, MAC),)  # retransmitted RetransTimer later
    assert c.on_advertisement(IP, None, solicited=True, override=False, router=False,
                              now=6.5) == []
    assert state(c) == (REACHABLE, MAC)
    assert c.next_deadline() == float("inf")
    assert not c.poll(7.0)


def test_rfc4861_7_3_3_probe_removes_the_entry_after_max_unicast_solicit():
    c = cache(max_unicast_solicit=3)
    delay(c, 0.0)
    sent = [c.poll(t).unicast for t in (5.0, 6.0, 7.0)]
    assert sent == [((IP, MAC),)] * 3
    actions = c.poll(8.0)
    assert actions.removed == (IP,) and not actions.unicast
    assert c.entries() == {} and c.next_deadline() == float("inf")
    assert c.lookup(IP, 8.5) == (None, False)


def test_rfc4861_7_3_1_upper_layer_confirmation_makes_reachable():
    c = cache()
    delay(c, 0.0)
    assert c.confirm(IP, 1.0) is True
    assert state(c) == (REACHABLE, MAC)
    assert c.next_deadline() == float("inf")  # the DELAY probe is cancelled
    assert not c.poll(5.0)
    assert c.lookup(IP, 1.0 + c.reachable_time - 0.01) == (MAC, False)
    assert c.confirm(IP2, 1.0) is False  # no entry
    c.enqueue(IP2, b"x", 1.0)
    assert c.confirm(IP2, 1.0) is False and state(c, IP2) == (INCOMPLETE, None)


def test_rfc4861_6_3_4_base_reachable_time_change_draws_a_new_value():
    c = cache(seed=3)
    first = c.reachable_time
    c.set_base_reachable_time(30.0)  # unchanged: no new draw
    assert c.reachable_time == first
    c.set_base_reachable_time(10.0)
    assert 5.0 <= c.reachable_time <= 15.0 and c.base_reachable_time == 10.0
    with pytest.raises(ValueError):
        c.set_base_reachable_time(0)


def test_rfc4861_6_3_4_reachable_time_is_drawn_again_every_few_hours():
    c = cache(seed=5)
    first = c.reachable_time
    c.confirm(IP, 0.0)  # no entry: nothing
    reachable(c, 0.0)
    c.confirm(IP, 100.0)
    assert c.reachable_time == first
    c.confirm(IP, 7300.0)
    assert c.reachable_time != first and 15.0 <= c.reachable_time <= 45.0


# --- the RFC 4861 7.2.5 table for entries that are not INCOMPLETE --------------------

SAME, OTHER, NONE = "same", "other", "none"

TABLE = [
    # state, solicited, override, lladdr, new state, MAC afterwards
    (REACHABLE, False, False, OTHER, STALE, MAC),     # I: STALE, nothing else
    (REACHABLE, True, False, OTHER, STALE, MAC),      # I
    (REACHABLE, False, True, OTHER, STALE, MAC2),     # II: new MAC, unsolicited
    (REACHABLE, True, True, OTHER, REACHABLE, MAC2),  # II: new MAC, solicited
    (REACHABLE, False, False, SAME, REACHABLE, MAC),  # II: unchanged
    (REACHABLE, True, False, NONE, REACHABLE, MAC),
    (STALE, False, False, OTHER, STALE, MAC),         # I: ignored
    (STALE, True, False, OTHER, STALE, MAC),          # I: ignored
    (STALE, True, False, SAME, REACHABLE, MAC),
    (STALE, False, True, OTHER, STALE, MAC2),
    (STALE, True, True, OTHER, REACHABLE, MAC2),
    (STALE, False, False, SAME, STALE, MAC),
    (STALE, False, True, NONE, STALE, MAC),
    (DELAY, False, False, OTHER, DELAY, MAC),         # I: ignored
    (DELAY, True, False, SAME, REACHABLE, MAC),
    (DELAY, False, True, OTHER, STALE, MAC2),
    (DELAY, False, False, SAME, DELAY, MAC),
    (PROBE, True, False, NONE, REACHABLE, MAC),
    (PROBE, True, False, OTHER, PROBE, MAC),          # I: ignored
    (PROBE, False, True, OTHER, STALE, MAC2),
    (PROBE, True, True, OTHER, REACHABLE, MAC2),
]


@pytest.mark.parametrize("start, solicited, override, lladdr, expected, mac", TABLE)
def test_rfc4861_7_2_5_advertisement_table(start, solicited, override, lladdr, expected, mac):
    c = cache()
    {REACHABLE: reachable, STALE: stale, DELAY: delay, PROBE: probe}[start](c, 0.0)
    now = 5.5  # inside the REACHABLE time and the PROBE retransmission
    given = {SAME: MAC, OTHER: MAC2, NONE: None}[lladdr]
    assert c.on_advertisement(IP, given, solicited=solicited, override=override, router=False,
                              now=now) == []
    assert state(c) == (expected, mac)
    if expected is REACHABLE:
        assert c.next_deadline() == float("inf")
        # A solicited advertisement restarts ReachableTime; otherwise it
        # still runs from the start.
        since = now if solicited else 0.0
        assert c.lookup(IP, since + c.reachable_time - 0.01) == (mac, False)
        assert c.lookup(IP, since + c.reachable_time) == (mac, True)
    elif expected is STALE:
        assert c.next_deadline() == float("inf")
        assert c.lookup(IP, now) == (mac, True)  # the next use goes to DELAY


def test_rfc4861_7_2_5_router_flag_loss_is_reported_once():
    c = cache()
    c.enqueue(IP, b"p", 0.0)
    c.on_advertisement(IP, MAC, solicited=True, override=False, router=True, now=0.1)
    assert c.is_router(IP) and c.pop_routers_lost() == []
    c.on_advertisement(IP, MAC, solicited=False, override=False, router=True, now=0.2)
    assert c.pop_routers_lost() == []
    c.on_advertisement(IP, MAC, solicited=False, override=False, router=False, now=0.3)
    assert not c.is_router(IP)
    assert c.pop_routers_lost() == [IP]
    assert c.pop_routers_lost() == []  # drained
    c.on_advertisement(IP, MAC, solicited=False, override=False, router=False, now=0.4)
    assert c.pop_routers_lost() == []  # false to false is no loss


def test_rfc4861_7_2_5_an_ignored_advertisement_does_not_touch_the_router_flag():
    c = cache()
    c.on_router(IP, MAC, 0.0)
    # Different MAC, no override: case I, the cache is not updated at all.
    c.on_advertisement(IP, MAC2, solicited=False, override=False, router=False, now=0.1)
    assert c.is_router(IP) and c.pop_routers_lost() == []
    assert state(c) == (STALE, MAC)


# --- bounds -----------------------------------------------------------------------


def test_queue_per_address_is_bounded_and_drops_the_oldest():
    c = cache(max_pending_packets=3)
    for i in range(5):
        c.enqueue(IP, b"p%d" % i, 0.0)
    assert c.dropped_packets == 2
    assert c.on_solicitation(IP, MAC, 0.1) == [b"p2", b"p3", b"p4"]


def test_addresses_being_resolved_are_bounded():
    c = cache(max_pending_hosts=2)
    assert c.enqueue(IP, b"a", 0.0) is True
    assert c.enqueue(IP2, b"b", 0.0) is True
    assert c.enqueue(IP3, b"c", 0.0) is None  # refused
    assert c.dropped_packets == 1 and IP3 not in c.entries()
    assert c.enqueue(IP, b"a2", 0.0) is False  # an outstanding one still queues
    c.on_solicitation(IP, MAC, 0.1)  # resolved: a slot is free again
    assert c.enqueue(IP3, b"c", 0.2) is True
    assert c.forget(IP2) == [b"b"]  # forgetting frees one too
    assert c.enqueue(IPv6Address("fe80::77"), b"d", 0.3) is True


def test_enqueue_for_a_resolved_address_is_a_caller_error():
    c = cache()
    stale(c, 0.0)
    with pytest.raises(ValueError):
        c.enqueue(IP, b"p", 0.0)


def test_full_cache_evicts_the_oldest_stale_entry_first():
    c = cache(max_entries=3)
    a, b, d, e = (IPv6Address(f"fe80::{i}") for i in (0xA, 0xB, 0xD, 0xE))
    stale(c, 1.0, a)
    reachable(c, 0.0, b)  # older, but REACHABLE
    stale(c, 2.0, d)
    c.on_solicitation(e, MAC2, 3.0)
    assert set(c.entries()) == {b, d, e}  # a was the oldest STALE
    c.on_solicitation(a, MAC, 4.0)
    assert set(c.entries()) == {b, e, a}  # then d


def test_full_cache_without_stale_entries_evicts_the_oldest_and_never_incomplete():
    c = cache(max_entries=2, max_pending_hosts=5)
    reachable(c, 0.0, IP)
    assert c.enqueue(IP2, b"x", 1.0) is True  # INCOMPLETE
    assert c.enqueue(IP3, b"y", 2.0) is True  # evicts the REACHABLE IP
    assert set(c.entries()) == {IP2, IP3}
    # Only INCOMPLETE entries left: a new one is refused, not evicted.
    assert c.enqueue(IPv6Address("fe80::55"), b"z", 3.0) is None
    assert c.on_solicitation(IPv6Address("fe80::56"), MAC, 3.0) == []
    assert set(c.entries()) == {IP2, IP3}


def test_an_expired_reachable_entry_counts_as_stale_for_eviction():
    c = cache(max_entries=2)
    reachable(c, 0.0, IP)
    stale(c, 50.0, IP2)  # newer than IP's time running out
    c.on_solicitation(IP3, MAC, 100.0)  # IP went stale at about 30 s: the oldest
    assert set(c.entries()) == {IP2, IP3}


# --- timers -----------------------------------------------------------------------


@pytest.mark.parametrize("step", [0.0, 0.3, 2.5])
def test_every_due_deadline_is_consumed_by_poll(step):
    """A due deadline left in place would make the caller's task spin."""
    c = cache(seed=2)
    c.enqueue(IP, b"x", 0.0)
    delay(c, 0.0, IP2, MAC2)
    stale(c, 0.0, IP3, MAC)
    c.lookup(IP3, 0.5)
    now = 0.0
    polls = 0
    while c.next_deadline() != float("inf"):
        now = max(now + step, c.next_deadline())
        c.poll(now)
        polls += 1
        assert c.next_deadline() > now
        assert polls < 50
    assert c.entries() == {}  # every one failed or was removed


def test_forget_drops_an_entry():
    c = cache()
    stale(c, 0.0)
    assert c.forget(IP) == [] and c.entries() == {}
    assert c.forget(IP) == []


def test_config_is_checked():
    with pytest.raises(ValueError):
        NdpConfig(max_entries=0)
    with pytest.raises(ValueError):
        NdpConfig(retrans_timer=0)
    with pytest.raises(TypeError):
        NdpConfig(max_unicast_solicit=1.5)


def test_the_same_seed_gives_the_same_timings():
    def run(seed):
        c = cache(seed)
        reachable(c, 0.0)
        return c.reachable_time, c.entries(c.reachable_time - 0.001)

    assert run(11) == run(11)
    assert run(11)[0] != run(12)[0]
