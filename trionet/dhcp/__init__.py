"""DHCPv4 client (RFC 2131, options RFC 2132): the state machine without
I/O (``machine``) and the task that runs it on an interface (``client``)."""
