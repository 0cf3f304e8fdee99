"""The one error type every parser raises."""


class WireError(ValueError):
    """A malformed or unsupported packet.

    ``reason`` is a short dotted tag (``"ipv4.bad_checksum"``) under which the
    stack counts the drop in ``stack.stats`` as ``"drop." + reason``.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
