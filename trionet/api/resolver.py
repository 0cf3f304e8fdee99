"""DNS for one stack (``stack.resolver``): a stub resolver (RFC 1034 5.3.1)
whose queries go over the stack's own UDP and TCP.

dnspython does the protocol: the messages, UDP with a retry over TCP when
an answer comes back truncated (RFC 7766 5), trying each server in turn and
again after a backoff, CNAME chains inside one answer, and the TTL of
positive and negative answers (RFC 2308 5: the smaller of the SOA's TTL and
its MINIMUM). Its Trio backend opens ``trio.socket`` sockets, so inside
``use_stack(stack)`` they are the stack's. What is added here:

- ``TrioCache``: answers kept on the Trio clock (so virtual time expires
  them), bounded, negative answers without an SOA not kept (RFC 2308 5),
  a TTL with the top bit set taken as 0 (RFC 2181 8);
- the whole lookup bounded by ``lifetime`` on the Trio clock;
- a CNAME whose target the server left unanswered is followed with a new
  query (RFC 1034 3.6.2, 5.3.3), a bounded number of times;
- A and AAAA asked at the same time; failures as ``socket.gaierror``.
"""

from __future__ import annotations

import math
import random
import socket as stdlib
from collections import OrderedDict
from ipaddress import IPv6Address, ip_address
from typing import Any

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import trio

from ..validate import IPAddress, check_int, check_seconds
from .sockets import use_stack

#: RFC 2181 8: a TTL with its most significant bit set is taken as zero.
_TTL_LIMIT = 2 ** 31 - 1
#: New queries made to follow CNAMEs a server left unanswered (RFC 1034
#: 5.3.3 only asks that the chain be bounded).
MAX_CNAME_RESTARTS = 8
#: EDNS(0) with a UDP payload that fits an IPv6 minimum MTU (RFC 6891 6.2.5,
#: the DNS flag day 2020 value).
EDNS_PAYLOAD = 1232

_NO_NAME = (stdlib.EAI_NONAME, "Name or service not known")
_AGAIN = (stdlib.EAI_AGAIN, "Temporary failure in name resolution")
_FAIL = (stdlib.EAI_FAIL, "Non-recoverable failure in name resolution")


def _gaierror(code: tuple[int, str], detail: str = "") -> stdlib.gaierror:
    number, text = code
    return stdlib.gaierror(number, f"{text}: {detail}" if detail else text)


def _has_soa(response: dns.message.Message) -> bool:
    return any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.authority)


class TrioCache:
    """dnspython's cache interface (``get``, ``put``, ``flush``) on the Trio
    clock, holding at most ``max_entries`` answers (the least recently used
    go first) for at most ``max_ttl`` seconds each."""

    def __init__(self, max_entries: int = 1024, max_ttl: float = 86400.0) -> None:
        self.max_entries = check_int(max_entries, "max_entries", 0)
        self.max_ttl = check_seconds(max_ttl, "max_ttl")
        self._entries: OrderedDict[Any, tuple[float, dns.resolver.Answer]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __bool__(self) -> bool:
        # dnspython asks ``if resolver.cache:``; an empty cache is a cache.
        return True

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def ttl_of(answer: dns.resolver.Answer) -> float:
        """Seconds ``answer`` may be kept: its chain's smallest TTL, which
        for a negative answer is min(SOA TTL, SOA MINIMUM) (RFC 2308 5);
        0 for a negative answer without an SOA (RFC 2308 5: not cached)."""
        if answer.rrset is None and not _has_soa(answer.response):
            return 0
        ttl = answer.chaining_result.minimum_ttl
        return 0 if ttl > _TTL_LIMIT else ttl

    def get(self, key) -> dns.resolver.Answer | None:
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > trio.current_time():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key, answer: dns.resolver.Answer) -> None:
        ttl = min(self.ttl_of(answer), self.max_ttl)
        if ttl <= 0 or not self.max_entries:
            # RFC 1035 3.2.1: a zero TTL is for this transaction only.
            self._entries.pop(key, None)
            return
        self._entries[key] = (trio.current_time() + ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def flush(self, key=None) -> None:
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)


class _SeededNameserver(dns.nameserver.Do53Nameserver):
    """A server over UDP and TCP port 53 whose queries take their ids from
    the stack's seeded generator (a new one for every query sent, RFC 5452
    4.3), so that a seeded run sends the same bytes again."""

    def __init__(self, address: str, rng: random.Random) -> None:
        super().__init__(address)
        self._rng = rng

    async def async_query(self, request, *args, **kwargs):
        request.id = self._rng.getrandbits(16)
        return await super().async_query(request, *args, **kwargs)


class Resolver:
    """Names to addresses over DNS for one stack, asking the servers of
    ``stack.nameservers`` (static ones first, then DHCP's and RDNSS's).

    ``timeout``: seconds to wait for one server's answer to one query;
    ``lifetime``: seconds a whole lookup may take (servers are tried in
    turn, then again after a backoff, until it ends). Both on the Trio
    clock. ``cache``: the answers kept (``resolver.cache.flush()``)."""

    def __init__(self, stack, *, timeout: float = 2.0, lifetime: float = 10.0,
                 cache_size: int = 1024, rng: random.Random | None = None) -> None:
        self._stack = stack
        #: Query ids (from the stack's seed).
        self._rng = rng if rng is not None else random.Random()
        self.cache = TrioCache(cache_size)
        self._dns = dns.asyncresolver.Resolver(configure=False)
        self._dns.cache = self.cache
        self._dns.use_edns(0, 0, EDNS_PAYLOAD)
        # SERVFAIL: that server is done for this lookup, the next is asked.
        self._dns.retry_servfail = False
        # Bounded on the Trio clock below; dnspython's clock is time.time().
        self._dns.lifetime = math.inf
        self._backend = dns.asyncbackend.get_backend("trio")
        self._servers: list[str] = []
        self.timeout = timeout
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return (f"<trionet Resolver {[str(s) for s in self._stack.nameservers]}, "
                f"{len(self.cache)} cached>")

    @property
    def timeout(self) -> float:
        return self._dns.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._dns.timeout = check_seconds(value, "timeout", positive=True)

    @property
    def lifetime(self) -> float:
        return self._lifetime

    @lifetime.setter
    def lifetime(self, value: float) -> None:
        self._lifetime = check_seconds(value, "lifetime", positive=True, allow_inf=True)

    def _server_texts(self) -> list[str]:
        """The stack's servers as dnspython takes them: a link-local one
        with its interface's index as the scope ("fe80::1%2")."""
        texts = []
        for server in self._stack.nameservers:
            if isinstance(server, IPv6Address) and server.scope_id is not None:
                index = self._stack.network.interface_index(server.scope_id)
                if not index:
                    continue
                texts.append(f"{IPv6Address(int(server))}%{index}")
            else:
                texts.append(str(server))
        return texts

    async def resolve(self, name: str, family: int = 0) -> tuple[list[IPAddress], str]:
        """The addresses of ``name`` (A records for AF_INET, AAAA for
        AF_INET6, both, asked at once, for 0) in the servers' order, IPv4
        first, and the canonical name. ``socket.gaierror``: EAI_NONAME when
        the name or its addresses do not exist (or no server is known),
        EAI_AGAIN when no server answered in time or they failed
        (SERVFAIL), EAI_FAIL for answers that cannot be used."""
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise _gaierror(_NO_NAME, str(exc)) from None
        servers = self._server_texts()
        if servers and not self._stack.running:
            raise RuntimeError("the stack is not running: use 'async with Stack() as stack:'")
        if not servers:
            # Only static names then (as a resolv.conf-less host).
            raise _gaierror(_NO_NAME)
        if servers != self._servers:
            self._dns.nameservers = [_SeededNameserver(text, self._rng) for text in servers]
            self._servers = servers
        rdtypes = {stdlib.AF_INET: [dns.rdatatype.A], stdlib.AF_INET6: [dns.rdatatype.AAAA]}.get(
            family, [dns.rdatatype.A, dns.rdatatype.AAAA])
        results: dict[int, tuple[list[IPAddress], str] | stdlib.gaierror] = {}

        async def lookup(rdtype: int) -> None:
            try:
                results[rdtype] = await self._lookup(qname, rdtype)
            except stdlib.gaierror as exc:
                results[rdtype] = exc

        with use_stack(self._stack):
            with trio.move_on_after(self._lifetime):
                async with trio.open_nursery() as nursery:
                    for rdtype in rdtypes:
                        nursery.start_soon(lookup, rdtype)
        addresses: list[IPAddress] = []
        canonical = ""
        errors = []
        for rdtype in rdtypes:
            result = results.get(rdtype, _gaierror(_AGAIN, f"no answer in {self._lifetime} s"))
            if isinstance(result, stdlib.gaierror):
                errors.append(result)
            else:
                addresses.extend(result[0])
                canonical = canonical or result[1]
        if addresses:
            return addresses, canonical
        # As the C library: any temporary failure makes the whole one so.
        for code in (stdlib.EAI_AGAIN, stdlib.EAI_FAIL):
            for error in errors:
                if error.errno == code:
                    raise error
        raise errors[0]

    async def _lookup(self, qname: dns.name.Name, rdtype: int) -> tuple[list[IPAddress], str]:
        seen = {qname}
        while True:
            try:
                answer = await self._dns.resolve(qname, rdtype, search=False,
                                                 raise_on_no_answer=False,
                                                 backend=self._backend)
            except dns.resolver.NXDOMAIN:
                raise _gaierror(_NO_NAME) from None
            except dns.resolver.NoNameservers as exc:
                raise _failure(exc) from None
            except dns.exception.Timeout:
                raise _gaierror(_AGAIN, "timed out") from None
            except (dns.message.ChainTooLong, dns.resolver.YXDOMAIN,
                    dns.message.AnswerForNXDOMAIN) as exc:
                raise _gaierror(_FAIL, str(exc)) from None
            except dns.exception.DNSException as exc:
                raise _gaierror(_FAIL, str(exc)) from None
            canonical = answer.canonical_name.to_text(omit_final_dot=True)
            if answer.rrset is not None:
                return [ip_address(rdata.address) for rdata in answer.rrset], canonical
            target = answer.canonical_name
            # RFC 1034 5.3.3: a CNAME whose target's data the server did not
            # give (no SOA saying there is none, RFC 2308 2.2) is asked for anew.
            if (not answer.chaining_result.cnames or _has_soa(answer.response)
                    or target in seen):
                raise _gaierror(_NO_NAME)
            if len(seen) > MAX_CNAME_RESTARTS:
                raise _gaierror(_FAIL, "CNAME chain too long")
            seen.add(target)
            qname = target


def _failure(exc: dns.resolver.NoNameservers) -> stdlib.gaierror:
    """Every server failed: EAI_AGAIN if any of them may answer later
    (SERVFAIL, REFUSED, a timeout, a network error), else EAI_FAIL."""
    errors = exc.kwargs.get("errors") or []
    for error in errors:
        problem = error[3]
        if (problem in (dns.rcode.to_text(dns.rcode.SERVFAIL), dns.rcode.to_text(dns.rcode.REFUSED))
                or isinstance(problem, (dns.exception.Timeout, OSError, EOFError))):
            return _gaierror(_AGAIN, _describe(errors))
    return _gaierror(_FAIL, _describe(errors))


def _describe(errors) -> str:
    return "; ".join(f"{error[0]}: {error[3]}" for error in errors)
