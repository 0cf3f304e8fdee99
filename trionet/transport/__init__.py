"""Transports: what they share (``ports``: ephemeral ports) and UDP
(``udp``). TCP, larger, has its own folder (``trionet.tcp``) at the same
layer."""
