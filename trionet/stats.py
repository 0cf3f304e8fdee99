"""Counters a stack keeps: what it received, sent and dropped, by reason."""

from collections import Counter


class Stats(Counter):
    """A ``Counter`` of events. Drops are keyed ``"drop.<layer>.<reason>"``
    (``stats["drop.ipv4.bad_checksum"]``); other keys count traffic
    (``"ipv4.rx"``, ``"udp.tx"``). Missing keys read as 0."""

    def drop(self, reason: str) -> None:
        self["drop." + reason] += 1

    def drops(self) -> dict[str, int]:
        """Every drop reason seen, with its count."""
        return {k[5:]: v for k, v in self.items() if k.startswith("drop.")}

    @property
    def dropped(self) -> int:
        return sum(self.drops().values())
