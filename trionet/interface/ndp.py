"""IPv6 neighbour cache without I/O: address resolution and neighbour
unreachability detection (RFC 4861 7.2, 7.3 and appendix C).

The interface owns one ``NeighbourCache`` and the task and timer around it;
the cache only decides: which MAC to use, which packets wait, which
solicitations to send and when a neighbour has failed. Every method takes
``now`` where time matters and does no I/O.

What the caller feeds in (after its own checks of RFC 4861 7.1: hop limit
255, valid options):

- ``on_solicitation``: a neighbour solicitation from a unicast source with a
  source link-layer address option (RFC 4861 7.2.3);
- ``on_advertisement``: every neighbour advertisement (RFC 4861 7.2.5);
- ``on_router``: a router advertisement's source and its source link-layer
  address option, if any (RFC 4861 6.3.4);
- ``confirm``: upper-layer proof that a neighbour is reachable, such as TCP
  acknowledging new data (RFC 4861 7.3.1).

What it gets back: packets that may go now (returned by the ``on_*``
methods), ``NeighbourActions`` from ``poll``, and the routers that stopped
being routers (``pop_routers_lost``).
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from ipaddress import IPv6Address

import attrs

from ..validate import check_int, check_seconds

INF = math.inf
#: ReachableTime is drawn again after this long, "at least once every few
#: hours" (RFC 4861 6.3.4).
RECHOOSE_REACHABLE_TIME = 7200.0
#: The random factors of ReachableTime (RFC 4861 10: MIN_RANDOM_FACTOR,
#: MAX_RANDOM_FACTOR).
MIN_RANDOM_FACTOR = 0.5
MAX_RANDOM_FACTOR = 1.5


class NeighbourState(enum.Enum):
    """Reachability states of RFC 4861 7.3.2."""
    INCOMPLETE = "incomplete"
    REACHABLE = "reachable"
    STALE = "stale"
    DELAY = "delay"
    PROBE = "probe"


INCOMPLETE = NeighbourState.INCOMPLETE
REACHABLE = NeighbourState.REACHABLE
STALE = NeighbourState.STALE
DELAY = NeighbourState.DELAY
PROBE = NeighbourState.PROBE
_TIMED = frozenset({INCOMPLETE, DELAY, PROBE})


@attrs.frozen(slots=True)
class NdpConfig:
    """Defaults are RFC 4861 10's host constants."""

    #: Seconds between solicitations (RetransTimer).
    retrans_timer: float = 1.0
    #: BaseReachableTime; the ReachableTime used is drawn uniformly from
    #: [0.5, 1.5] times it (RFC 4861 6.3.2).
    reachable_time: float = 30.0
    delay_first_probe_time: float = 5.0
    max_multicast_solicit: int = 3
    max_unicast_solicit: int = 3
    #: Packets held per unresolved address; older ones are dropped first.
    max_pending_packets: int = 32
    #: Addresses being resolved at once; more are refused.
    max_pending_hosts: int = 256
    #: Entries kept; the oldest STALE one is evicted to make room.
    max_entries: int = 1024

    def __attrs_post_init__(self) -> None:
        check_seconds(self.retrans_timer, "retrans_timer", positive=True)
        check_seconds(self.reachable_time, "reachable_time", positive=True)
        check_seconds(self.delay_first_probe_time, "delay_first_probe_time", positive=True)
        check_int(self.max_multicast_solicit, "max_multicast_solicit", 1)
        check_int(self.max_unicast_solicit, "max_unicast_solicit", 1)
        check_int(self.max_pending_packets, "max_pending_packets", 1)
        check_int(self.max_pending_hosts, "max_pending_hosts", 1)
        check_int(self.max_entries, "max_entries", 1)


@attrs.frozen(slots=True)
class NeighbourActions:
    """What ``poll`` found due; the caller does all of it, in this order."""

    #: Send a multicast neighbour solicitation for each target (to its
    #: solicited-node address, with our source link-layer address; RFC
    #: 4861 7.2.2).
    multicast: tuple[IPv6Address, ...] = ()
    #: Send a unicast solicitation for each target to the cached MAC
    #: (RFC 4861 7.3.3, PROBE).
    unicast: tuple[tuple[IPv6Address, bytes], ...] = ()
    #: Resolution failed: answer each packet with an ICMPv6 destination
    #: unreachable, code 3 (address unreachable), RFC 4861 7.2.2.
    failed: tuple[tuple[IPv6Address, list[bytes]], ...] = ()
    #: Entries deleted after unanswered unicast probes (RFC 4861 7.3.3);
    #: the next packet for them starts resolution afresh.
    removed: tuple[IPv6Address, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.multicast or self.unicast or self.failed or self.removed)


@attrs.define(slots=True)
class _Neighbour:
    state: NeighbourState
    #: None only while INCOMPLETE.
    mac: bytes | None
    #: INCOMPLETE, DELAY, PROBE: when the timer fires. REACHABLE: when the
    #: entry goes stale (not a timer: see ``NeighbourCache.next_deadline``).
    #: STALE: infinity.
    deadline: float
    #: Solicitations sent in INCOMPLETE or PROBE.
    sent: int = 0
    is_router: bool = False
    #: When the entry last changed state or was confirmed: eviction order.
    since: float = 0.0
    #: Packets waiting for resolution (INCOMPLETE only).
    packets: deque | None = None


class NeighbourCache:
    """Neighbour cache of one interface: IPv6 address -> MAC and state.

    REACHABLE entries age lazily: an entry past its ReachableTime counts as
    STALE when ``lookup``, ``poll`` or ``entries(now)`` next sees it, and
    its expiry is not a timer (``next_deadline`` leaves it out), so a full
    cache does not wake the task once per entry and per ReachableTime.
    """

    def __init__(self, config: NdpConfig | None, rng: random.Random):
        self.config = config or NdpConfig()
        #: The stack's seeded generator: ReachableTime is drawn from it.
        self._rng = rng
        self._entries: dict[IPv6Address, _Neighbour] = {}
        self._incomplete = 0
        self._routers_lost: list[IPv6Address] = []
        #: RetransTimer; a router advertisement may change it (RFC 4861
        #: 6.3.4): the caller assigns the new value here.
        self.retrans_timer = self.config.retrans_timer
        self.base_reachable_time = self.config.reachable_time
        self.reachable_time = self._choose_reachable_time()
        self._rechoose_at: float | None = None
        #: Packets dropped: a full queue for one address (the oldest goes)
        #: or too many addresses being resolved.
        self.dropped_packets = 0
        #: Updates ignored because they named a multicast or unspecified
        #: address or a group MAC.
        self.ignored = 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- ReachableTime ---------------------------------------------------

    def _choose_reachable_time(self) -> float:
        # RFC 4861 6.3.2: uniformly random between MIN_RANDOM_FACTOR and
        # MAX_RANDOM_FACTOR times BaseReachableTime.
        return self.base_reachable_time * self._rng.uniform(MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR)

    def set_base_reachable_time(self, seconds: float) -> None:
        """A router advertised a Reachable Time (RFC 4861 6.3.4): a new
        value is drawn when it differs from the current base."""
        seconds = check_seconds(seconds, "reachable_time", positive=True)
        if seconds != self.base_reachable_time:
            self.base_reachable_time = seconds
            self.reachable_time = self._choose_reachable_time()

    # --- queries ---------------------------------------------------------

    def entries(self, now: float | None = None
                ) -> dict[IPv6Address, tuple[NeighbourState, bytes | None]]:
        """ip -> (state, MAC or None while INCOMPLETE). With ``now``,
        REACHABLE entries past their time are aged to STALE first."""
        if now is not None:
            for entry in self._entries.values():
                self._age(entry, now)
        return {ip: (e.state, e.mac) for ip, e in self._entries.items()}

    def pending_addresses(self) -> list[IPv6Address]:
        return [ip for ip, e in self._entries.items() if e.state is INCOMPLETE]

    def probably_reachable(self, ip: IPv6Address) -> bool:
        """An entry in any state but INCOMPLETE (RFC 4861 6.3.6)."""
        entry = self._entries.get(ip)
        return entry is not None and entry.state is not INCOMPLETE

    def is_router(self, ip: IPv6Address) -> bool:
        entry = self._entries.get(ip)
        return entry is not None and entry.is_router

    def pop_routers_lost(self) -> list[IPv6Address]:
        """Neighbours whose IsRouter flag went from true to false since the
        last call (RFC 4861 7.2.5). The caller removes each from its
        default router list (``AddressConfigurator.remove_router``) and
        drops destinations routed through it."""
        lost, self._routers_lost = self._routers_lost, []
        return lost

    def next_deadline(self) -> float:
        """The earliest INCOMPLETE, DELAY or PROBE timer (infinity: none)."""
        deadline = INF
        for entry in self._entries.values():
            if entry.state in _TIMED and entry.deadline < deadline:
                deadline = entry.deadline
        return deadline

    # --- sending ---------------------------------------------------------

    def lookup(self, ip: IPv6Address, now: float) -> tuple[bytes | None, bool]:
        """For a packet about to go to ``ip``: (MAC or None, whether the
        timers changed).

        Nothing is ever sent from here: a STALE entry (or a REACHABLE one
        past its time) being used moves to DELAY and its probe goes from
        ``poll`` after DELAY_FIRST_PROBE_TIME (RFC 4861 7.3.3). The second
        value is True exactly then, so the caller moves its timer to
        ``next_deadline()``. None: no usable entry, call ``enqueue``.
        """
        entry = self._entries.get(ip)
        if entry is None or entry.mac is None:
            return None, False
        state = entry.state
        if state is REACHABLE and now < entry.deadline:
            return entry.mac, False
        if state is REACHABLE or state is STALE:
            entry.state = DELAY
            entry.deadline = now + self.config.delay_first_probe_time
            entry.since = now
            return entry.mac, True
        return entry.mac, False

    def enqueue(self, ip: IPv6Address, packet: bytes, now: float) -> bool | None:
        """Hold ``packet`` until ``ip`` resolves (RFC 4861 7.2.2).

        True: a new INCOMPLETE entry, send a multicast solicitation now and
        move the timer. False: a solicitation is outstanding already (a
        full queue dropped its oldest packet). None: refused, too many
        addresses are being resolved or the cache is full of them.
        Only for addresses ``lookup`` found no MAC for.
        """
        config = self.config
        entry = self._entries.get(ip)
        if entry is not None:
            if entry.state is not INCOMPLETE:
                raise ValueError(f"{ip} has a link-layer address: use lookup")
            packets = entry.packets
            if len(packets) >= config.max_pending_packets:
                packets.popleft()
                self.dropped_packets += 1
            packets.append(packet)
            return False
        if self._incomplete >= config.max_pending_hosts or not self._make_room(now):
            self.dropped_packets += 1
            return None
        self._entries[ip] = _Neighbour(INCOMPLETE, None, now + self.retrans_timer, sent=1,
                                       since=now, packets=deque((packet,)))
        self._incomplete += 1
        return True

    # --- receiving -------------------------------------------------------

    def on_solicitation(self, source_ip: IPv6Address, source_mac: bytes,
                        now: float) -> list[bytes]:
        """A neighbour solicitation from the unicast ``source_ip`` carrying
        a source link-layer address option (RFC 4861 7.2.3): the entry is
        created STALE, or updated (to STALE if the MAC changed). Returns
        the packets that waited for ``source_ip``: they can go now."""
        return self._learn(source_ip, source_mac, now, None)

    def on_router(self, source_ip: IPv6Address, source_mac: bytes | None,
                  now: float) -> list[bytes]:
        """A router advertisement from ``source_ip`` (RFC 4861 6.3.4): its
        source link-layer address, if any, is recorded as by a
        solicitation, and an entry's IsRouter flag is set."""
        if source_mac is None:
            entry = self._entries.get(source_ip)
            if entry is not None:
                entry.is_router = True
            return []
        return self._learn(source_ip, source_mac, now, True)

    def on_redirect(self, target: IPv6Address, mac: bytes | None, to_router: bool,
                    now: float) -> list[bytes]:
        """A redirect to ``target`` (RFC 4861 8.3): its target link-layer
        address, if any, creates the entry STALE or updates it as a
        solicitation's does; a target other than the destination
        (``to_router``) is a router, else the flag is left as it was."""
        if mac is None:
            entry = self._entries.get(target)
            if entry is not None and to_router:
                entry.is_router = True
            return []
        return self._learn(target, mac, now, True if to_router else None)

    def _learn(self, ip: IPv6Address, mac: bytes, now: float, router: bool | None) -> list[bytes]:
        if not self._acceptable(ip, mac):
            return []
        entry = self._entries.get(ip)
        if entry is None:
            # RFC 4861 7.2.3 (and 6.3.4): a new entry is STALE.
            if self._make_room(now):
                self._entries[ip] = _Neighbour(STALE, bytes(mac), INF, since=now,
                                               is_router=bool(router))
            return []
        if router:
            entry.is_router = True
        if entry.state is INCOMPLETE:
            # Appendix C: INCOMPLETE -> STALE, send the queued packets.
            entry.mac = bytes(mac)
            packets = self._take_packets(entry)
            self._stale(entry, now)
            return packets
        if mac != entry.mac:
            # RFC 4861 7.2.3: a different address replaces the cached one
            # and the entry MUST become STALE.
            entry.mac = bytes(mac)
            self._stale(entry, now)
        return []

    def on_advertisement(self, target: IPv6Address, mac: bytes | None, *, solicited: bool,
                         override: bool, router: bool, now: float) -> list[bytes]:
        """A neighbour advertisement for ``target`` (``mac``: its target
        link-layer address option, None if absent), RFC 4861 7.2.5.
        Returns the packets that waited for ``target``: they can go now.
        A router flag going from true to false is queued for
        ``pop_routers_lost``."""
        entry = self._entries.get(target)
        if entry is None:
            return []  # RFC 4861 7.2.5: no entry, silently discarded
        if mac is not None and not self._acceptable(target, mac):
            return []
        if entry.state is INCOMPLETE:
            if mac is None:
                return []  # nothing to resolve with: discarded
            entry.mac = bytes(mac)
            entry.is_router = router
            packets = self._take_packets(entry)
            if solicited:
                self._reachable(entry, now)
            else:
                self._stale(entry, now)
            return packets
        different = mac is not None and mac != entry.mac
        if different and not override:
            # RFC 4861 7.2.5 I: REACHABLE becomes STALE, nothing else
            # changes; in any other state the advertisement is ignored.
            if entry.state is REACHABLE:
                self._stale(entry, now)
            return []
        # RFC 4861 7.2.5 II: override, the same MAC, or none given.
        if different:
            entry.mac = bytes(mac)
        if solicited:
            self._reachable(entry, now)
        elif different:
            self._stale(entry, now)
        if entry.is_router and not router:
            self._routers_lost.append(target)
        entry.is_router = router
        return []

    def confirm(self, ip: IPv6Address, now: float) -> bool:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1): the entry
        becomes REACHABLE. True if there was an entry with a MAC."""
        entry = self._entries.get(ip)
        if entry is None or entry.mac is None:
            return False
        self._reachable(entry, now)
        return True

    def forget(self, ip: IPv6Address) -> list[bytes]:
        """Delete the entry for ``ip``; returns the packets that waited."""
        entry = self._entries.pop(ip, None)
        if entry is None:
            return []
        return self._take_packets(entry) if entry.state is INCOMPLETE else []

    # --- timers ----------------------------------------------------------

    def poll(self, now: float) -> NeighbourActions:
        """Every timer due at ``now``, each consumed (a due deadline left in
        place would wake the caller's task again at once)."""
        config = self.config
        multicast: list[IPv6Address] = []
        unicast: list[tuple[IPv6Address, bytes]] = []
        failed: list[tuple[IPv6Address, list[bytes]]] = []
        removed: list[IPv6Address] = []
        for ip, entry in list(self._entries.items()):
            if entry.deadline > now:
                continue
            state = entry.state
            if state is REACHABLE:
                self._age(entry, now)
            elif state is INCOMPLETE:
                if entry.sent >= config.max_multicast_solicit:
                    # RFC 4861 7.2.2: resolution failed; the waiting
                    # packets get ICMPv6 address unreachable.
                    del self._entries[ip]
                    failed.append((ip, self._take_packets(entry)))
                else:
                    entry.sent += 1
                    entry.deadline = now + self.retrans_timer
                    multicast.append(ip)
            elif state is DELAY:
                # RFC 4861 7.3.3: still DELAY when the timer fires: PROBE,
                # a unicast solicitation every RetransTimer.
                entry.state = PROBE
                entry.sent = 1
                entry.since = now
                entry.deadline = now + self.retrans_timer
                unicast.append((ip, entry.mac))
            elif state is PROBE:
                if entry.sent >= config.max_unicast_solicit:
                    # RFC 4861 7.3.3: no answer to MAX_UNICAST_SOLICIT
                    # probes: the entry is deleted.
                    del self._entries[ip]
                    removed.append(ip)
                else:
                    entry.sent += 1
                    entry.deadline = now + self.retrans_timer
                    unicast.append((ip, entry.mac))
        return NeighbourActions(tuple(multicast), tuple(unicast), tuple(failed), tuple(removed))

    # --- helpers ---------------------------------------------------------

    def _acceptable(self, ip: IPv6Address, mac: bytes) -> bool:
        if len(mac) != 6:
            raise ValueError("MAC addresses must be 6 bytes")
        if ip.is_multicast or ip.is_unspecified or mac[0] & 1:
            self.ignored += 1
            return False
        return True

    def _age(self, entry: _Neighbour, now: float) -> None:
        # RFC 4861 7.3.3: REACHABLE past ReachableTime becomes STALE.
        if entry.state is REACHABLE and now >= entry.deadline:
            went_stale = entry.deadline
            self._stale(entry, went_stale)

    def _reachable(self, entry: _Neighbour, now: float) -> None:
        if self._rechoose_at is None:
            self._rechoose_at = now + RECHOOSE_REACHABLE_TIME
        elif now >= self._rechoose_at:
            self.reachable_time = self._choose_reachable_time()
            self._rechoose_at = now + RECHOOSE_REACHABLE_TIME
        entry.state = REACHABLE
        entry.deadline = now + self.reachable_time
        entry.sent = 0
        entry.since = now

    def _stale(self, entry: _Neighbour, now: float) -> None:
        entry.state = STALE
        entry.deadline = INF
        entry.sent = 0
        entry.since = now

    def _take_packets(self, entry: _Neighbour) -> list[bytes]:
        packets = list(entry.packets) if entry.packets is not None else []
        if entry.packets is not None:
            entry.packets = None
            self._incomplete -= 1
        return packets

    def _make_room(self, now: float) -> bool:
        """Room for one more entry: evict the oldest STALE entry (counting
        REACHABLE ones past their time), else the oldest other entry with
        a MAC. INCOMPLETE entries are never evicted: their packets wait."""
        if len(self._entries) < self.config.max_entries:
            return True
        victim = None
        best = None
        for ip, entry in self._entries.items():
            if entry.state is INCOMPLETE:
                continue
            stale = entry.state is STALE or (entry.state is REACHABLE and now >= entry.deadline)
            key = (not stale, entry.since)
            if best is None or key < best:
                best, victim = key, ip
        if victim is None:
            return False
        del self._entries[victim]
        return True
