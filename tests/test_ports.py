"""Ports picked for a later bind stay out of the system's own picks, and a discovery port among
them is warned about (CI once saw a listener's socket take its own session's discovery port)."""

import logging
import socket

import pytest

from wrapyfi_like.middlewares.ports import LOWEST, ephemeral_ports, free_port, free_ports
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings, warn_if_ephemeral

pytestmark = pytest.mark.timeout(30)


def test_a_picked_port_is_free_and_below_the_range_the_system_hands_out():
    ephemeral = ephemeral_ports()
    picked = [free_port() for _ in range(50)]
    assert len(set(picked)) == 50, "one process got the same port twice"
    for port in picked:
        assert LOWEST <= port < ephemeral.start
        with socket.socket() as check:
            check.bind(("127.0.0.1", port))


def test_consecutive_ports_are_all_free():
    first = free_ports(3)
    sockets = [socket.socket() for _ in range(3)]
    try:
        for offset, sock in enumerate(sockets):
            sock.bind(("0.0.0.0", first + offset))
    finally:
        for sock in sockets:
            sock.close()


def test_ports_the_system_picks_by_itself_are_in_the_ephemeral_range():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        assert probe.getsockname()[1] in ephemeral_ports()


def test_a_discovery_port_the_system_may_hand_out_is_warned_about_once(monkeypatch, caplog):
    port = ephemeral_ports().start + 7
    warn_if_ephemeral.cache_clear()
    monkeypatch.setenv("WRAPYFI_ZEROMQ_DISCOVERY", f"tcp://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.zeromq.discovery"):
        ZeroMQSettings.from_environment()
        ZeroMQSettings.from_environment()
    warnings = [r.getMessage() for r in caplog.records if str(port) in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"choose a port below {ephemeral_ports().start}" in warnings[0]


def test_a_discovery_port_below_the_ephemeral_range_is_not_warned_about(monkeypatch, caplog):
    warn_if_ephemeral.cache_clear()
    monkeypatch.setenv("WRAPYFI_ZEROMQ_DISCOVERY", f"tcp://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.zeromq.discovery"):
        ZeroMQSettings.from_environment()
    assert not caplog.records
