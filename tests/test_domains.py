"""Domains and users pick the default discovery address, so unrelated systems never meet; the ipc
folder is private."""

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.zeromq import settings
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings, discovery_port, private_folder
from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[1]


def test_the_port_formula_and_its_range(monkeypatch):
    assert discovery_port(1000, 0) == 7700
    assert discovery_port(1001, 0) == 7940
    assert discovery_port(1001, 5) == 7945
    assert discovery_port(99, 239) == 31699 < 32768  # never in Linux's ephemeral range
    ports = {discovery_port(uid, domain) for uid in range(100) for domain in range(240)}
    assert len(ports) == 100 * 240  # every (uid mod 100, domain) has its own port

    monkeypatch.delenv("WRAPYFI_ZEROMQ_DISCOVERY")
    monkeypatch.setenv("WRAPYFI_LIKE_DOMAIN", "7")
    found = ZeroMQSettings.from_environment()
    assert found.discovery == f"tcp://127.0.0.1:{discovery_port(os.getuid(), 7)}"
    assert (found.domain, found.realm) == (7, f"{os.getuid()}/7")
    monkeypatch.setenv("WRAPYFI_ZEROMQ_DISCOVERY", "tcp://10.0.0.1:5659")  # still overrides
    assert ZeroMQSettings.from_environment().discovery == "tcp://10.0.0.1:5659"
    assert ZeroMQSettings.from_environment().realm == "/7"
    for bad in ("-1", "240", "abc", "1.5", "0x10"):
        monkeypatch.setenv("WRAPYFI_LIKE_DOMAIN", bad)
        with pytest.raises(ConfigurationError, match="WRAPYFI_LIKE_DOMAIN must be an integer 0–239"):
            ZeroMQSettings.from_environment()


def test_two_domains_on_one_host_never_see_each_other(topic):
    first = 100 + uuid.uuid4().int % 70  # domains no other test uses, on this user's default ports
    second = first + 70
    in_first = {"WRAPYFI_ZEROMQ_DISCOVERY": "", "WRAPYFI_LIKE_DOMAIN": str(first)}
    in_second = {"WRAPYFI_ZEROMQ_DISCOVERY": "", "WRAPYFI_LIKE_DOMAIN": str(second)}
    nodes = []
    try:
        stranger = Node("listen", topic, env=in_second)  # the same topic, another domain
        listener = Node("listen", topic, env=in_first)
        nodes += [stranger, listener]
        stranger.wait_for(event_is("ready"))
        endpoint = listener.wait_for(event_is("ready"))["endpoint"]
        nodes.append(Node("publish", topic, "--count", "30", env=in_first))
        for seq in range(30):
            listener.wait_for(event_is("got", seq=seq))

        topics = subprocess.run([sys.executable, "-m", "wrapyfi_like", "topics"], cwd=ROOT, capture_output=True,
                                text=True, timeout=30, env={**os.environ, **in_first})
        lines = topics.stdout.splitlines()
        assert lines[0] == f"domain {first} (discovery tcp://127.0.0.1:{discovery_port(os.getuid(), first)})"
        members = []
        for line in lines[lines.index(topic) + 1:]:
            if not line.startswith("  "):
                break
            members.append(line)
        listeners = [line for line in members if line.split()[0] == "listener"]
        assert len(listeners) == 1 and endpoint in listeners[0], members
        assert all(event.get("event") != "got" for event in list(stranger.events.queue)), "a stranger got data"
    finally:
        for node in nodes:
            node.stop()


def test_the_ipc_folder_is_private(tmp_path):
    created = private_folder(str(tmp_path / "new"))
    assert stat.S_IMODE(os.stat(created).st_mode) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        private_folder(str(shared))
    shared.chmod(0o770)
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        private_folder(str(shared))

    link = tmp_path / "link"
    link.symlink_to(created)
    with pytest.raises(ConfigurationError, match="not a folder"):
        private_folder(str(link))


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_an_ipc_folder_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    monkeypatch.setenv("WRAPYFI_ZEROMQ_IPC_DIR", str(foreign))
    with pytest.raises(ConfigurationError, match="belongs to uid 65534"):
        ZeroMQSettings.from_environment().bind_address("ipc")
    from wrapyfi_like.connect.listeners import Listener

    with pytest.raises(ConfigurationError, match="belongs to uid 65534"):
        Listener("Private", "/domains/ipc", carrier="ipc")


def test_the_ipc_carrier_works_in_the_default_private_folder(topic, tmp_path, monkeypatch):
    from wrapyfi_like.connect.listeners import Listener
    from wrapyfi_like.connect.publishers import Publisher

    folder = tmp_path / "ipc"
    monkeypatch.setenv("WRAPYFI_ZEROMQ_IPC_DIR", str(folder))
    listener = Listener("Private", topic, carrier="ipc")
    publisher = Publisher("Private", topic, wait_timeout=10)
    try:
        assert listener._transport.endpoint.startswith(f"ipc://{folder}/")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        publisher.publish("over ipc")
        assert listener.listen() == "over ipc"
    finally:
        publisher.close(), listener.close()
    assert settings.MAX_DOMAIN == 239
