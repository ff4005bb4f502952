"""Picking a tcp port to bind a moment later, and the ports the system picks by itself.

Why not bind port 0 and close the probe: the system hands its ephemeral ports to every socket
bound or connected without a port, a listener's own data socket included, so a port learnt that
way may be taken before it is bound again. Once seen in CI: a listener's socket took its own
session's discovery port, read the discovery requests as malformed messages, and the directory
never started. A port between the highest default discovery port and the ephemeral range is only
ever taken by name.
"""

from __future__ import annotations

import random
import socket

LOWEST = 31700
"""Above every default discovery port (7700–31699, see ``zeromq/settings.py``)."""

_handed_out: set[int] = set()  # a process never gets the same port twice


def ephemeral_ports() -> range:
    """The ports the system hands to sockets bound or connected without one (Linux's
    ``ip_local_port_range``; the IANA range 49152–65535 where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low, high = (int(port) for port in ports.read().split())
    except (OSError, ValueError):
        return range(49152, 65536)
    return range(low, high + 1)


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive tcp ports free on every IPv4 address right now, outside
    the ephemeral range (or, where that range leaves no room, ports the system picks)."""
    highest = ephemeral_ports().start - count  # the last run that ends below the ephemeral range
    if highest < LOWEST:
        return _system_picked(count)
    for _ in range(500):
        first = random.randint(LOWEST, highest)
        run = range(first, first + count)
        if not _handed_out.intersection(run) and _all_free(run):
            _handed_out.update(run)
            return first
    raise OSError(f"no run of {count} free tcp ports between {LOWEST} and {highest}")


def free_port() -> int:
    """One tcp port free right now (see the module's docstring for why not port 0)."""
    return free_ports(1)


def _all_free(ports: range) -> bool:
    probes = []
    try:
        for port in ports:
            probe = socket.socket()
            probes.append(probe)
            probe.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        for probe in probes:
            probe.close()


def _system_picked(count: int) -> int:
    for _ in range(500):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            first = probe.getsockname()[1]
        if _all_free(range(first, first + count)):
            return first
    raise OSError(f"no run of {count} free tcp ports")
