#!/usr/bin/env python3
"""Print a TCP port that is free on 127.0.0.1 now, the kernel's choice, for the
server a script starts next (every script here that needs one asks this).

  ci/free-port.py        # usage: port=$(ci/free-port.py)

The port is released before the server binds it, so another process could take
it in between; the servers started this way then fail to bind and say so, they
never share a port. Exit codes: 0 printed, 1 no port could be had.
"""

import socket

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
