"""IPv6 address autoconfiguration without I/O: the link-local address and DAD
(RFC 4862), stable identifiers (RFC 7217), SLAAC, default routers, on-link
prefixes and link parameters from router advertisements (RFC 4861 6.3.4),
DNS servers (RFC 8106), router solicitation (RFC 4861 6.3.7). Explicit
times and a seeded random.Random throughout."""

from __future__ import annotations

import hashlib
import random
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

import pytest

from trionet.interface import autoconf
from trionet.interface.autoconf import (IDGEN_DELAY, IDGEN_RETRIES, AddressChanged,
                                        AddressConfigurator, AddressOrigin, AutoconfConfig,
                                        DnsServers, LinkParameters, PrefixChanged, Refused,
                                        RouterChanged, SendDadSolicitation,
                                        SendRouterSolicitation, reserved_iid)
from trionet.interface.interface import AddressState
from trionet.wire.icmpv6 import (INFINITE_LIFETIME, PrefixInformation, RdnssOption,
                                 RouterAdvertisement, interface_id_from_mac)

TENTATIVE = AddressState.TENTATIVE
PREFERRED = AddressState.PREFERRED
DEPRECATED = AddressState.DEPRECATED
DUPLICATE = AddressState.DUPLICATE
LINK_LOCAL = AddressOrigin.LINK_LOCAL
STATIC = AddressOrigin.STATIC
SLAAC = AddressOrigin.SLAAC

MAC = bytes.fromhex("02000000aa01")
SECRET = bytes(range(16))
OTHER_SECRET = bytes(range(1, 17))
ROUTER = IPv6Address("fe80::1")
ROUTER2 = IPv6Address("fe80::2")
PREFIX = IPv6Network("2001:db8:1::/64")
PREFIX2 = IPv6Network("2001:db8:2::/64")
ANY = IPv6Address("::")
INF = float("inf")


def expected_iid(prefix: IPv6Network, counter: int, secret: bytes = SECRET) -> int:
    """RFC 7217 5 as the brief states it: the first 64 bits of
    SHA-256(prefix | MAC | network id (empty) | DAD counter | secret)."""
    data = prefix.network_address.packed[:8] + MAC + bytes((counter,)) + secret
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def stable(prefix: IPv6Network, counter: int = 0, secret: bytes = SECRET) -> IPv6Interface:
    return IPv6Interface((IPv6Address(int(prefix.network_address)
                                      | expected_iid(prefix, counter, secret)), 64))


LL = stable(IPv6Network("fe80::/64"))


def make(seed: int = 1, secret: bytes = SECRET, **config) -> AddressConfigurator:
    return AddressConfigurator(MAC, AutoconfConfig(**config), random.Random(seed), secret)


def ra(*prefixes, lifetime=1800, **fields) -> RouterAdvertisement:
    return RouterAdvertisement(router_lifetime=lifetime, prefixes=tuple(prefixes), **fields)


def pio(network=PREFIX, valid=86400, preferred=14400, on_link=True, autonomous=True):
    return PrefixInformation(network.network_address, network.prefixlen, on_link, autonomous,
                             valid, preferred)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def run_until(ac: AddressConfigurator, until: float, now: float = 0.0):
    """Poll at every deadline up to ``until``: (time, event) pairs."""
    seen = []
    while ac.next_deadline() <= until:
        now = ac.next_deadline()
        seen.extend((now, e) for e in ac.poll(now))
        assert ac.next_deadline() > now  # every due deadline consumed
    return seen


def settled(ac: AddressConfigurator, now: float = 0.0) -> float:
    """start() and run DAD and the solicitations to the end; returns when."""
    ac.start(now)
    seen = run_until(ac, now + 20.0, now)
    return seen[-1][0]


def slaac_ready(ac: AddressConfigurator, now: float, *options, **fields):
    """An RA forming addresses at ``now``, DAD run to the end (1 s)."""
    events = ac.on_router_advertisement(ra(*options, **fields), ROUTER, now)
    events += ac.poll(now + 1.0)
    return events


# --- the link-local address (RFC 4862 5.3, RFC 7217 5) ----------------------------------


def test_rfc7217_5_link_local_address_has_the_stable_identifier():
    ac = make()
    events = ac.start(0.0)
    assert events == [AddressChanged(LL, TENTATIVE, LINK_LOCAL)]
    assert ac.link_local == LL.ip and LL.ip.is_link_local
    # Not the modified EUI-64 one: the MAC does not show.
    assert int(LL.ip) & ((1 << 64) - 1) != interface_id_from_mac(MAC)
    assert ac.addresses() == {LL.ip: (LL, TENTATIVE, LINK_LOCAL)}
    assert ac.is_tentative(LL.ip)
    assert autoconf.stable_iid(IPv6Network("fe80::/64"), MAC, 0, SECRET) == expected_iid(
        IPv6Network("fe80::/64"), 0)


def test_rfc7217_5_the_same_secret_gives_the_same_addresses_and_another_secret_others():
    a, b, c = make(seed=1), make(seed=99), make(seed=1, secret=OTHER_SECRET)
    for ac in (a, b, c):
        ac.start(0.0)
    assert a.link_local == b.link_local  # whatever the seed
    assert a.link_local != c.link_local
    assert c.link_local == stable(IPv6Network("fe80::/64"), secret=OTHER_SECRET).ip
    ea = slaac_ready(a, 5.0, pio())
    ec = slaac_ready(c, 5.0, pio())
    assert of(ea, AddressChanged)[0].address == stable(PREFIX)
    assert of(ec, AddressChanged)[0].address == stable(PREFIX, secret=OTHER_SECRET)
    assert stable(PREFIX).ip in PREFIX


def test_rfc5453_reserved_identifiers():
    assert reserved_iid(0)  # subnet-router anycast
    assert reserved_iid(0x02005EFFFE000000) and reserved_iid(0x02005EFFFEFFFFFF)
    assert not reserved_iid(0x02005EFFFF000000) and not reserved_iid(0x02005EFFFDFFFFFF)
    assert reserved_iid(0xFDFFFFFFFFFFFF80) and reserved_iid((1 << 64) - 1)  # RFC 2526
    assert not reserved_iid(0xFDFFFFFFFFFFFF7F) and not reserved_iid(1)


def test_rfc7217_5_a_reserved_identifier_is_skipped_with_the_next_counter(monkeypatch):
    real = autoconf.stable_iid

    def fake(prefix, mac, counter, secret, network_id=b""):
        return 0 if counter == 0 else real(prefix, mac, counter, secret, network_id)

    monkeypatch.setattr(autoconf, "stable_iid", fake)
    ac = make()
    ac.start(0.0)
    assert ac.link_local == stable(IPv6Network("fe80::/64"), 1).ip


def test_rfc7217_5_an_identifier_in_use_in_the_prefix_is_skipped():
    ac = make()
    ac.add_address(stable(PREFIX), 0.0)  # a static address that happens to collide
    events = ac.on_router_advertisement(ra(pio()), ROUTER, 0.0)
    assert of(events, AddressChanged)[0].address == stable(PREFIX, 1)


# --- DAD (RFC 4862 5.4) -----------------------------------------------------------


def test_rfc4862_5_4_2_first_dad_solicitation_is_delayed_randomly_then_preferred():
    ac = make(seed=4, rtr_solicitations=0)
    ac.start(10.0)
    first = ac.next_deadline()  # the only timer: the first DAD solicitation
    assert 10.0 <= first <= 11.0  # MAX_RTR_SOLICITATION_DELAY
    seen = run_until(ac, 11.0 + 1.0 + 0.001, 10.0)
    dad = [(t, e) for t, e in seen if isinstance(e, (SendDadSolicitation, AddressChanged))]
    assert dad == [(first, SendDadSolicitation(LL.ip)),
                   (first + 1.0, AddressChanged(LL, PREFERRED, LINK_LOCAL))]
    assert not ac.is_tentative(LL.ip)


def test_rfc4862_5_4_2_dad_sends_dad_transmits_solicitations_retrans_timer_apart():
    ac = make(dad_transmits=3, retrans_timer=2.0)
    address = IPv6Interface("2001:db8::5/64")
    assert ac.add_address(address, 0.0) == [AddressChanged(address, TENTATIVE, STATIC),
                                            SendDadSolicitation(address.ip)]
    assert ac.next_deadline() == 2.0
    assert ac.poll(1.999) == []
    assert ac.poll(2.0) == [SendDadSolicitation(address.ip)]
    assert ac.poll(4.0) == [SendDadSolicitation(address.ip)]
    assert ac.poll(5.999) == []  # RetransTimer after the last one not yet over
    assert ac.is_tentative(address.ip)
    assert ac.poll(6.0) == [AddressChanged(address, PREFERRED, STATIC)]
    assert ac.next_deadline() == INF


def test_rfc4862_5_4_dad_transmits_zero_means_no_dad():
    ac = make(dad_transmits=0)
    address = IPv6Interface("2001:db8::5/64")
    assert ac.add_address(address, 0.0) == [AddressChanged(address, TENTATIVE, STATIC),
                                            AddressChanged(address, PREFERRED, STATIC)]


@pytest.mark.parametrize("clause", ["rfc4862_5_4_3_solicitation_from_unspecified",
                                    "rfc4862_5_4_4_advertisement_for_the_target"])
def test_dad_conflict_makes_a_static_address_duplicate(clause):
    """Both kinds of conflict (another node's DAD solicitation, RFC 4862
    5.4.3; an advertisement for our tentative address, 5.4.4) reach the
    configurator the same way; a static address is not retried."""
    ac = make(dad_transmits=2)
    address = IPv6Interface("2001:db8::5/64")
    ac.add_address(address, 0.0)
    assert ac.on_dad_conflict(address.ip, 0.5) == [AddressChanged(address, DUPLICATE, STATIC)]
    assert ac.addresses() == {} and not ac.is_tentative(address.ip)
    assert ac.next_deadline() == INF
    assert ac.poll(10.0) == []  # never used, nothing more about it


def test_rfc4862_5_4_conflict_on_an_address_that_is_not_tentative_changes_nothing():
    ac = make()
    address = IPv6Interface("2001:db8::5/64")
    ac.add_address(address, 0.0)
    ac.poll(1.0)
    assert ac.addresses()[address.ip][1] is PREFERRED
    assert ac.on_dad_conflict(address.ip, 2.0) == []
    assert ac.on_dad_conflict(IPv6Address("2001:db8::77"), 2.0) == []
    assert ac.addresses()[address.ip][1] is PREFERRED


def test_rfc7217_6_link_local_conflict_retries_with_the_next_counter():
    ac = make(seed=8, rtr_solicitations=0)
    ac.start(0.0)
    first = ac.link_local
    events = ac.on_dad_conflict(first, 0.5)
    retry = stable(IPv6Network("fe80::/64"), 1)
    assert events == [AddressChanged(LL, DUPLICATE, LINK_LOCAL),
                      AddressChanged(retry, TENTATIVE, LINK_LOCAL)]
    assert ac.link_local == retry.ip != first
    # RFC 7217 6: a random delay up to IDGEN_DELAY before the new attempt.
    dad_at = ac.next_deadline()
    assert 0.5 <= dad_at <= 0.5 + IDGEN_DELAY
    seen = run_until(ac, dad_at + 1.0, 0.5)
    assert (dad_at, SendDadSolicitation(retry.ip)) in seen
    assert (dad_at + 1.0, AddressChanged(retry, PREFERRED, LINK_LOCAL)) in seen


def test_rfc7217_6_link_local_gives_up_after_idgen_retries():
    ac = make()
    ac.start(0.0)
    now = 0.0
    for counter in range(IDGEN_RETRIES):
        now += 0.1
        events = ac.on_dad_conflict(ac.link_local, now)
        assert events[1] == AddressChanged(stable(IPv6Network("fe80::/64"), counter + 1),
                                           TENTATIVE, LINK_LOCAL)
    last = ac.link_local
    events = ac.on_dad_conflict(last, now + 0.1)
    assert events == [AddressChanged(IPv6Interface((last, 64)), DUPLICATE, LINK_LOCAL),
                      Refused("autoconf.link_local_duplicate", str(last))]
    assert ac.link_local is None and ac.addresses() == {}


def test_rfc7217_6_slaac_conflict_retries_then_the_prefix_stays_without_an_address():
    ac = make(seed=3)
    events = ac.on_router_advertisement(ra(pio(on_link=False), lifetime=0), ROUTER, 0.0)
    assert of(events, AddressChanged) == [AddressChanged(stable(PREFIX), TENTATIVE, SLAAC)]
    now = 0.0
    for counter in range(IDGEN_RETRIES):
        now += 0.2
        events = ac.on_dad_conflict(stable(PREFIX, counter).ip, now)
        assert events == [AddressChanged(stable(PREFIX, counter), DUPLICATE, SLAAC),
                          AddressChanged(stable(PREFIX, counter + 1), TENTATIVE, SLAAC)]
    events = ac.on_dad_conflict(stable(PREFIX, IDGEN_RETRIES).ip, now + 0.2)
    assert events == [AddressChanged(stable(PREFIX, IDGEN_RETRIES), DUPLICATE, SLAAC)]
    assert not any(o is SLAAC for _, _, o in ac.addresses().values())
    # Later advertisements of the prefix do not start over...
    events = ac.on_router_advertisement(ra(pio(on_link=False), lifetime=0), ROUTER, 100.0)
    assert events == []
    # ...until the prefix's valid lifetime has ended (cut to 2 hours here).
    assert ac.on_router_advertisement(ra(pio(valid=0, preferred=0, on_link=False), lifetime=0),
                                      ROUTER, 200.0) == []
    assert ac.next_deadline() == 200.0 + 7200.0
    assert ac.poll(200.0 + 7200.0) == []  # no address to remove
    assert ac.next_deadline() == INF
    events = ac.on_router_advertisement(ra(pio()), ROUTER, 7500.0)
    assert of(events, AddressChanged) == [AddressChanged(stable(PREFIX), TENTATIVE, SLAAC)]


# --- SLAAC (RFC 4862 5.5.3, 5.5.4) --------------------------------------------------


def test_rfc4862_5_5_3_d_address_formed_from_an_advertised_prefix():
    ac = make()
    events = ac.on_router_advertisement(ra(pio()), ROUTER, 0.0)
    assert events == [RouterChanged(ROUTER, 1800.0),
                      PrefixChanged(PREFIX, True),
                      AddressChanged(stable(PREFIX), TENTATIVE, SLAAC),
                      SendDadSolicitation(stable(PREFIX).ip)]
    assert ac.poll(1.0) == [AddressChanged(stable(PREFIX), PREFERRED, SLAAC)]
    assert ac.on_link_prefixes() == {PREFIX: 86400.0}
    assert ac.routers() == {ROUTER: 1800.0}


def test_rfc4862_5_5_4_preferred_then_deprecated_then_removed_by_time():
    ac = make()
    slaac_ready(ac, 0.0, pio(valid=200, preferred=100), lifetime=0)
    assert ac.next_deadline() == 100.0
    assert ac.poll(99.9) == []
    assert ac.poll(100.0) == [AddressChanged(stable(PREFIX), DEPRECATED, SLAAC)]
    assert ac.next_deadline() == 200.0
    assert ac.poll(200.0) == [AddressChanged(stable(PREFIX), None, SLAAC),
                              PrefixChanged(PREFIX, False)]
    assert ac.addresses() == {} and ac.on_link_prefixes() == {}
    assert ac.next_deadline() == INF


def test_rfc4862_5_5_3_e_preferred_lifetime_is_reset_deprecating_or_renewing():
    ac = make()
    slaac_ready(ac, 0.0, pio(valid=10000, preferred=5000), lifetime=0)
    events = ac.on_router_advertisement(ra(pio(valid=10000, preferred=0), lifetime=0),
                                        ROUTER, 10.0)
    assert events == [AddressChanged(stable(PREFIX), DEPRECATED, SLAAC)]
    events = ac.on_router_advertisement(ra(pio(valid=10000, preferred=300), lifetime=0),
                                        ROUTER, 20.0)
    assert events == [AddressChanged(stable(PREFIX), PREFERRED, SLAAC)]
    assert ac.poll(320.0) == [AddressChanged(stable(PREFIX), DEPRECATED, SLAAC)]


def test_rfc4862_5_5_3_d_preferred_lifetime_over_before_dad_ends_gives_deprecated():
    ac = make()
    events = slaac_ready(ac, 0.0, pio(valid=600, preferred=0), lifetime=0)
    assert events[-1] == AddressChanged(stable(PREFIX), DEPRECATED, SLAAC)


@pytest.mark.parametrize("first_valid, at, advertised, removed_at", [
    (36000, 100.0, 3600, 100.0 + 7200),    # remaining > 2 h, advertised short: 2 h
    (36000, 100.0, 10800, 100.0 + 10800),  # advertised > 2 h: taken
    (36000, 100.0, 0, 100.0 + 7200),       # even 0 only brings it down to 2 h
    (3600, 100.0, 60, 3600.0),             # remaining <= 2 h: ignored
    (3600, 100.0, 5000, 5100.0),           # longer than what remains: taken
    (3600, 100.0, INFINITE_LIFETIME, INF),
])
def test_rfc4862_5_5_3_e_two_hour_rule(first_valid, at, advertised, removed_at):
    ac = make()
    slaac_ready(ac, 0.0, pio(valid=first_valid, preferred=0, on_link=False), lifetime=0)
    ac.on_router_advertisement(ra(pio(valid=advertised, preferred=0, on_link=False),
                                  lifetime=0), ROUTER, at)
    assert ac.next_deadline() == removed_at
    if removed_at != INF:
        assert ac.poll(removed_at - 0.01) == []
        assert ac.poll(removed_at) == [AddressChanged(stable(PREFIX), None, SLAAC)]


@pytest.mark.parametrize("option, reason", [
    (pio(IPv6Network("2001:db8:1::/48")), "autoconf.prefix_length"),
    (pio(IPv6Network("2001:db8:1::/80")), "autoconf.prefix_length"),
    (pio(valid=100, preferred=200), "autoconf.bad_prefix_lifetimes"),
    (pio(IPv6Network("fe80::/64")), "autoconf.prefix_link_local"),
    (pio(IPv6Network("ff02::/64")), "autoconf.bad_prefix"),
    (pio(IPv6Network("::/64")), "autoconf.bad_prefix"),
    (pio(IPv6Network("::/0")), "autoconf.bad_prefix"),
    (pio(IPv6Network("::1/128")), "autoconf.bad_prefix"),  # RFC 4291 2.5.3
    (pio(IPv6Network("::ffff:0:0/96")), "autoconf.bad_prefix"),  # RFC 4291 2.5.5.2
])
def test_rfc4862_5_5_3_bad_prefixes_form_no_address(option, reason):
    ac = make()
    events = ac.on_router_advertisement(ra(option, lifetime=0), ROUTER, 0.0)
    assert Refused(reason, str(option.network)) in events
    assert of(events, AddressChanged) == [] and ac.addresses() == {}
    if reason != "autoconf.prefix_length":
        assert of(events, PrefixChanged) == []  # nor is it taken as on-link (RFC 4861 6.3.4)


def test_rfc4862_5_5_3_a_non_64_prefix_is_still_on_link():
    ac = make()
    network = IPv6Network("2001:db8:1::/48")
    events = ac.on_router_advertisement(ra(pio(network), lifetime=0), ROUTER, 0.0)
    assert events == [PrefixChanged(network, True),
                      Refused("autoconf.prefix_length", str(network))]


def test_rfc4862_5_5_3_a_and_d_no_address_without_the_a_flag_or_a_valid_lifetime():
    ac = make()
    events = ac.on_router_advertisement(
        ra(pio(autonomous=False), pio(PREFIX2, valid=0, preferred=0), lifetime=0), ROUTER, 0.0)
    assert events == [PrefixChanged(PREFIX, True)]
    assert ac.addresses() == {}
    off = make(slaac=False)
    assert of(off.on_router_advertisement(ra(pio()), ROUTER, 0.0), AddressChanged) == []


# --- routers and on-link prefixes (RFC 4861 6.3.4) ------------------------------------


def test_rfc4861_6_3_4_default_router_added_refreshed_and_removed():
    ac = make()
    assert ac.on_router_advertisement(ra(lifetime=600), ROUTER, 0.0) == [
        RouterChanged(ROUTER, 600.0)]
    assert ac.routers() == {ROUTER: 600.0}
    assert ac.on_router_advertisement(ra(lifetime=600), ROUTER, 500.0) == []  # refreshed
    assert ac.routers() == {ROUTER: 1100.0}
    assert ac.poll(600.0) == []
    assert ac.on_router_advertisement(ra(lifetime=900), ROUTER, 550.0) == [
        RouterChanged(ROUTER, 900.0)]
    assert ac.on_router_advertisement(ra(lifetime=0), ROUTER, 560.0) == [
        RouterChanged(ROUTER, None)]
    assert ac.routers() == {}
    assert ac.on_router_advertisement(ra(lifetime=0), ROUTER, 570.0) == []


def test_rfc4861_6_3_4_default_router_expires():
    ac = make()
    ac.on_router_advertisement(ra(lifetime=30), ROUTER, 0.0)
    assert ac.next_deadline() == 30.0
    assert ac.poll(29.9) == []
    assert ac.poll(30.0) == [RouterChanged(ROUTER, None)]
    assert ac.routers() == {} and ac.next_deadline() == INF


def test_rfc4861_7_2_5_router_flag_loss_removes_the_default_router():
    ac = make()
    ac.on_router_advertisement(ra(), ROUTER, 0.0)
    assert ac.remove_router(ROUTER, 1.0) == [RouterChanged(ROUTER, None)]
    assert ac.remove_router(ROUTER, 1.0) == []
    assert ac.routers() == {}


def test_rfc4861_6_3_4_on_link_prefix_added_refreshed_timed_out_at_once_or_expired():
    ac = make(slaac=False)
    assert ac.on_router_advertisement(ra(pio(valid=100, preferred=50), lifetime=0),
                                      ROUTER, 0.0) == [PrefixChanged(PREFIX, True)]
    assert ac.on_router_advertisement(ra(pio(valid=100, preferred=50), lifetime=0),
                                      ROUTER, 50.0) == []
    assert ac.on_link_prefixes() == {PREFIX: 150.0}
    assert ac.poll(149.0) == [] and ac.poll(150.0) == [PrefixChanged(PREFIX, False)]
    ac.on_router_advertisement(ra(pio(valid=100, preferred=50), lifetime=0), ROUTER, 200.0)
    # A zero valid lifetime times the prefix out at once.
    assert ac.on_router_advertisement(ra(pio(valid=0, preferred=0), lifetime=0),
                                      ROUTER, 210.0) == [PrefixChanged(PREFIX, False)]
    assert ac.on_link_prefixes() == {}


def test_rfc4861_6_1_2_advertisement_from_a_non_link_local_source_is_refused():
    ac = make()
    source = IPv6Address("2001:db8::1")
    assert ac.on_router_advertisement(ra(pio()), source, 0.0) == [
        Refused("autoconf.ra_source", str(source))]
    assert ac.routers() == {} and ac.addresses() == {}


def test_rfc4861_6_3_4_link_parameters_reported_when_they_change():
    ac = make()
    adv = ra(lifetime=0, mtu=1400, cur_hop_limit=32, reachable_time=20000, retrans_timer=500)
    assert ac.on_router_advertisement(adv, ROUTER, 0.0) == [
        LinkParameters(mtu=1400, hop_limit=32, reachable_time=20.0, retrans_timer=0.5)]
    assert ac.on_router_advertisement(adv, ROUTER, 1.0) == []  # nothing new
    changed = ra(lifetime=0, mtu=1400, cur_hop_limit=64)
    assert ac.on_router_advertisement(changed, ROUTER, 2.0) == [LinkParameters(hop_limit=64)]
    # The new RetransTimer paces DAD.
    address = IPv6Interface("2001:db8::5/64")
    ac.add_address(address, 10.0)
    assert ac.next_deadline() == 10.5
    assert ac.poll(10.5) == [AddressChanged(address, PREFERRED, STATIC)]


@pytest.mark.parametrize("fields, reason", [
    ({"mtu": 1279}, "autoconf.bad_mtu"),
    ({"reachable_time": 3_600_001}, "autoconf.bad_reachable_time"),
    ({"retrans_timer": 0xFFFFFFFF}, "autoconf.bad_retrans_timer"),
])
def test_rfc4861_6_3_4_link_parameters_that_make_no_sense_are_refused(fields, reason):
    ac = make()
    events = ac.on_router_advertisement(ra(lifetime=0, **fields), ROUTER, 0.0)
    assert events == [Refused(reason, str(next(iter(fields.values()))))]
    assert ac.retrans_timer == 1.0


def test_rfc4861_6_3_4_mtu_above_the_link_mtu_is_ignored():
    ac = AddressConfigurator(MAC, AutoconfConfig(), random.Random(1), SECRET, link_mtu=1500)
    assert ac.on_router_advertisement(ra(lifetime=0, mtu=9000), ROUTER, 0.0) == [
        Refused("autoconf.bad_mtu", "9000")]
    assert ac.on_router_advertisement(ra(lifetime=0, mtu=1500), ROUTER, 0.0) == [
        LinkParameters(mtu=1500)]


# --- router solicitation (RFC 4861 6.3.7) --------------------------------------------


def test_rfc4861_6_3_7_solicitations_random_first_delay_count_and_interval():
    ac = make(seed=6)
    ac.start(100.0)
    seen = run_until(ac, 200.0, 100.0)
    sent = [(t, e) for t, e in seen if isinstance(e, SendRouterSolicitation)]
    assert len(sent) == 3  # MAX_RTR_SOLICITATIONS
    first = sent[0][0]
    assert 100.0 <= first <= 101.0  # MAX_RTR_SOLICITATION_DELAY
    assert [t for t, _ in sent] == [first, first + 4.0, first + 8.0]
    # From :: while the link-local address is tentative, from it after.
    ll_ready = next(t for t, e in seen if e == AddressChanged(LL, PREFERRED, LINK_LOCAL))
    for t, e in sent:
        assert e.source == (LL.ip if t >= ll_ready else ANY)
    assert sent[-1][1].source == LL.ip
    assert ac.next_deadline() == INF


def test_rfc4861_6_3_7_first_delays_differ_by_seed_and_stay_in_bounds():
    firsts = set()
    for seed in range(10):
        ac = make(seed=seed, dad_transmits=0)
        ac.start(0.0)
        firsts.add(ac.next_deadline())
    assert all(0.0 <= t <= 1.0 for t in firsts) and len(firsts) == 10


def test_rfc4861_6_3_7_an_advertisement_with_a_router_lifetime_stops_solicitations():
    ac = make(seed=2, dad_transmits=0)
    ac.start(0.0)
    first = ac.next_deadline()
    assert ac.poll(first) == [SendRouterSolicitation(LL.ip)]
    # Lifetime 0: not a default router, keep soliciting.
    ac.on_router_advertisement(ra(lifetime=0), ROUTER, first + 1.0)
    assert ac.poll(first + 4.0) == [SendRouterSolicitation(LL.ip)]
    ac.on_router_advertisement(ra(lifetime=1800), ROUTER, first + 5.0)
    assert ac.next_deadline() == first + 5.0 + 1800.0  # only the router's expiry
    assert of(run_until(ac, first + 100.0), SendRouterSolicitation) == []


def test_rfc4861_6_3_7_no_solicitations_when_configured_off():
    ac = make(rtr_solicitations=0, dad_transmits=0)
    ac.start(0.0)
    assert ac.next_deadline() == INF


# --- DNS servers (RFC 8106) -----------------------------------------------------------


def test_rfc8106_5_3_1_dns_servers_reported_refreshed_removed_and_expired():
    ac = make()
    d1, d2 = IPv6Address("2001:db8::53"), IPv6Address("2001:db8::54")
    events = ac.on_router_advertisement(ra(lifetime=0, rdnss=(RdnssOption(600, (d1, d2)),)),
                                        ROUTER, 0.0)
    assert events == [DnsServers(((d1, 600.0), (d2, 600.0)))]
    events = ac.on_router_advertisement(ra(lifetime=0, rdnss=(RdnssOption(600, (d1,)),)),
                                        ROUTER, 100.0)
    assert events == [DnsServers(((d1, 700.0), (d2, 600.0)))]
    assert ac.poll(600.0) == [DnsServers(((d1, 700.0),))]
    events = ac.on_router_advertisement(ra(lifetime=0, rdnss=(RdnssOption(0, (d1,)),)),
                                        ROUTER, 650.0)
    assert events == [DnsServers(())] and ac.dns_servers() == ()
    forever = ac.on_router_advertisement(
        ra(lifetime=0, rdnss=(RdnssOption(INFINITE_LIFETIME, (d2,)),)), ROUTER, 700.0)
    assert forever == [DnsServers(((d2, INF),))] and ac.next_deadline() == INF


def test_rfc8106_5_3_1_full_list_replaces_the_server_expiring_first():
    ac = make(max_dns_servers=2)
    servers = [IPv6Address(f"2001:db8::{i}") for i in range(1, 4)]
    ac.on_router_advertisement(ra(lifetime=0, rdnss=(RdnssOption(300, (servers[0],)),
                                                     RdnssOption(900, (servers[1],)))),
                               ROUTER, 0.0)
    events = ac.on_router_advertisement(
        ra(lifetime=0, rdnss=(RdnssOption(600, (servers[2],)),)), ROUTER, 10.0)
    assert events == [DnsServers(((servers[1], 900.0), (servers[2], 610.0)))]
    bad = ac.on_router_advertisement(
        ra(lifetime=0, rdnss=(RdnssOption(600, (IPv6Address("ff02::1"),)),)), ROUTER, 20.0)
    assert bad == [Refused("autoconf.bad_dns_server", "ff02::1")]


# --- bounds against hostile advertisements --------------------------------------------


def test_routers_are_bounded():
    ac = make(max_routers=2)
    routers = [IPv6Address(f"fe80::{i}") for i in range(1, 5)]
    events = []
    for r in routers:
        events += ac.on_router_advertisement(ra(), r, 0.0)
    assert of(events, RouterChanged) == [RouterChanged(r, 1800.0) for r in routers[:2]]
    assert of(events, Refused) == [Refused("autoconf.too_many_routers", str(r))
                                   for r in routers[2:]]
    assert set(ac.routers()) == set(routers[:2])


def test_one_hostile_advertisement_creates_bounded_state():
    ac = make(max_addresses=3, max_prefixes=4)
    prefixes = [IPv6Network(f"2001:db8:{i:x}::/64") for i in range(1, 101)]
    events = ac.on_router_advertisement(ra(*(pio(p) for p in prefixes)), ROUTER, 0.0)
    assert len(ac.on_link_prefixes()) == 4
    assert len(ac.addresses()) == 3
    refused = of(events, Refused)
    assert sum(r.reason == "autoconf.too_many_prefixes" for r in refused) == 96
    assert sum(r.reason == "autoconf.too_many_addresses" for r in refused) == 97
    # Refreshing the same prefixes adds nothing.
    ac.on_router_advertisement(ra(*(pio(p) for p in prefixes)), ROUTER, 1.0)
    assert len(ac.addresses()) == 3 and len(ac.on_link_prefixes()) == 4


# --- the rest -----------------------------------------------------------------------


def test_every_due_deadline_is_consumed_by_poll():
    ac = make(seed=9, dad_transmits=2)
    ac.start(0.0)
    ac.on_router_advertisement(
        ra(pio(valid=50, preferred=20), pio(PREFIX2, valid=80, preferred=80), lifetime=40,
           rdnss=(RdnssOption(30, (IPv6Address("2001:db8::53"),)),)), ROUTER, 0.5)
    seen = run_until(ac, 1000.0)
    assert ac.next_deadline() == INF
    assert ac.routers() == {} and ac.on_link_prefixes() == {} and ac.dns_servers() == ()
    assert set(ac.addresses()) == {LL.ip}
    assert (50.5, AddressChanged(stable(PREFIX), None, SLAAC)) in seen


def test_the_same_seed_gives_the_same_events_and_another_seed_other_timings():
    def script(seed):
        ac = make(seed=seed)
        ac.start(0.0)
        out = run_until(ac, 2.0)
        out += [(2.0, e) for e in ac.on_router_advertisement(ra(pio()), ROUTER, 2.0)]
        out += [(2.5, e) for e in ac.on_dad_conflict(stable(PREFIX).ip, 2.5)]
        return out + run_until(ac, 20.0, 2.5)

    assert script(5) == script(5)
    other = script(6)
    assert other != script(5)
    # The addresses do not depend on the seed, only on the secret.
    events = {e for _, e in script(5) if isinstance(e, AddressChanged)}
    assert events == {e for _, e in other if isinstance(e, AddressChanged)}


def test_remove_address_and_start_twice():
    ac = make()
    ac.start(0.0)
    with pytest.raises(RuntimeError):
        ac.start(1.0)
    assert ac.remove_address(LL.ip, 1.0) == [AddressChanged(LL, None, LINK_LOCAL)]
    assert ac.link_local is None and ac.remove_address(LL.ip, 1.0) == []
    slaac_ready(ac, 2.0, pio())
    assert ac.remove_address(stable(PREFIX).ip, 5.0) == [
        AddressChanged(stable(PREFIX), None, SLAAC)]
    # The next advertisement forms it again.
    events = ac.on_router_advertisement(ra(pio()), ROUTER, 6.0)
    assert AddressChanged(stable(PREFIX), TENTATIVE, SLAAC) in events


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        AddressConfigurator(MAC, None, random.Random(1), b"short")
    with pytest.raises(ValueError):
        AddressConfigurator(b"\x02", None, random.Random(1), SECRET)
    with pytest.raises(ValueError):
        AutoconfConfig(dad_transmits=-1)
    ac = make()
    with pytest.raises(TypeError):
        ac.add_address(IPv6Address("2001:db8::1"), 0.0)
    with pytest.raises(ValueError):
        ac.add_address(IPv6Interface("ff02::1/64"), 0.0)
    ac.add_address(IPv6Interface("2001:db8::1/64"), 0.0)
    with pytest.raises(ValueError):
        ac.add_address(IPv6Interface("2001:db8::1/64"), 0.0)
