"""ARP neighbour cache without I/O (RFC 826, RFC 1122 2.3.2).

The interface owns one ``ArpCache`` and a resolver task around it; the cache
only decides: which MAC to use, which packets wait, which requests to send
and when a destination has failed.
"""

from collections import deque
from ipaddress import IPv4Address

import attrs


@attrs.define(slots=True)
class _Entry:
    mac: bytes
    #: After this the entry is stale: still used, but re-confirmed by a request.
    refresh_at: float
    #: Requests sent to re-confirm a stale entry (0 while fresh).
    probes: int = 0
    next_probe: float = 0.0


@attrs.define(slots=True)
class _Pending:
    packets: deque
    tries: int
    next_retry: float


@attrs.frozen(slots=True)
class ArpConfig:
    #: Seconds an entry is trusted before it is re-confirmed.
    timeout: float = 60.0
    #: Seconds between requests for one address (the rate limit).
    retry_interval: float = 1.0
    #: Requests sent for one address before it counts as unreachable.
    max_tries: int = 3
    #: Packets held per unresolved address; older ones are dropped first.
    max_pending_packets: int = 32
    #: Addresses being resolved at once; more are refused.
    max_pending_hosts: int = 256
    #: Entries kept; the oldest is evicted to make room.
    max_entries: int = 1024


class ArpCache:
    """Mappings IPv4 -> MAC, the packets waiting for one, and the timers.

    Every method takes ``now`` and does no I/O. The caller sends the requests
    named by ``enqueue``/``poll`` and the packets returned by ``learn``.
    """

    def __init__(self, config: ArpConfig | None = None):
        self.config = config or ArpConfig()
        self._entries: dict[IPv4Address, _Entry] = {}
        self._pending: dict[IPv4Address, _Pending] = {}
        self.dropped_packets = 0

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> dict[IPv4Address, bytes]:
        return {ip: e.mac for ip, e in self._entries.items()}

    def pending_addresses(self) -> list[IPv4Address]:
        return list(self._pending)

    def lookup(self, ip: IPv4Address, now: float) -> tuple[bytes | None, bool]:
        """(mac or None, whether to send a request for ``ip`` now).

        A stale entry keeps being used while it is re-confirmed: the first
        use after ``timeout`` sends a probe, ``poll`` sends the next ones
        ``retry_interval`` apart, and the entry is dropped when ``max_tries``
        probes go unanswered (RFC 1122 2.3.2.1).
        """
        entry = self._entries.get(ip)
        if entry is None:
            return None, False
        if now < entry.refresh_at:
            return entry.mac, False
        if entry.probes == 0:
            entry.probes = 1
            entry.next_probe = now + self.config.retry_interval
            return entry.mac, True
        if now < entry.next_probe:
            return entry.mac, False
        if entry.probes >= self.config.max_tries:
            # Probes went unanswered: resolve afresh (RFC 1122 2.3.2.1).
            del self._entries[ip]
            return None, False
        # poll is late: probe now.
        entry.probes += 1
        entry.next_probe = now + self.config.retry_interval
        return entry.mac, True

    def enqueue(self, ip: IPv4Address, packet: bytes, now: float) -> bool | None:
        """Hold ``packet`` until ``ip`` resolves.

        Returns True when a request should go out now (first packet for
        ``ip``), False when one is already outstanding, None when the packet
        was dropped because too many addresses are being resolved.
        """
        pending = self._pending.get(ip)
        if pending is not None:
            if len(pending.packets) >= self.config.max_pending_packets:
                pending.packets.popleft()
                self.dropped_packets += 1
            pending.packets.append(packet)
            return False
        if len(self._pending) >= self.config.max_pending_hosts:
            self.dropped_packets += 1
            return None
        self._pending[ip] = _Pending(deque((packet,)), 1, now + self.config.retry_interval)
        return True

    def learn(self, ip: IPv4Address, mac: bytes, now: float, *, create: bool) -> list[bytes]:
        """Record ``ip`` at ``mac``; return the packets that waited for it.

        RFC 826: an existing entry is always updated ("merge"); a new one is
        made only when ``create`` (the packet was addressed to us) or when we
        were resolving ``ip`` ourselves.
        """
        pending = self._pending.pop(ip, None)
        entry = self._entries.get(ip)
        if entry is None and not create and pending is None:
            return []
        if entry is None:
            if len(self._entries) >= self.config.max_entries:
                oldest = min(self._entries, key=lambda k: self._entries[k].refresh_at)
                del self._entries[oldest]
            self._entries[ip] = _Entry(mac, now + self.config.timeout)
        else:
            entry.mac = mac
            entry.refresh_at = now + self.config.timeout
            entry.probes = 0
            entry.next_probe = 0.0
        return list(pending.packets) if pending is not None else []

    def forget(self, ip: IPv4Address) -> None:
        self._entries.pop(ip, None)

    def poll(self, now: float) -> tuple[list[IPv4Address], list[tuple[IPv4Address, list[bytes]]]]:
        """Timers due at ``now``: (addresses to request again, addresses that
        failed with the packets that waited for them)."""
        retry: list[IPv4Address] = []
        failed: list[tuple[IPv4Address, list[bytes]]] = []
        for ip, pending in list(self._pending.items()):
            if now < pending.next_retry:
                continue
            if pending.tries >= self.config.max_tries:
                del self._pending[ip]
                self._entries.pop(ip, None)
                failed.append((ip, list(pending.packets)))
            else:
                pending.tries += 1
                pending.next_retry = now + self.config.retry_interval
                retry.append(ip)
        for ip, entry in list(self._entries.items()):
            if not entry.probes or now < entry.next_probe:
                continue
            if entry.probes >= self.config.max_tries:
                # A stale entry whose probes all went unanswered is gone.
                del self._entries[ip]
            else:
                # Keep re-confirming it, one request per retry_interval; a
                # due deadline must always be consumed here, or the resolver
                # task would wake up again at once.
                entry.probes += 1
                entry.next_probe = now + self.config.retry_interval
                retry.append(ip)
        return retry, failed

    def next_deadline(self) -> float:
        deadline = float("inf")
        for pending in self._pending.values():
            if pending.next_retry < deadline:
                deadline = pending.next_retry
        for entry in self._entries.values():
            if entry.probes and entry.next_probe < deadline:
                deadline = entry.next_probe
        return deadline
