"""NETCONF fixtures: one real `kubefabric run` process (started with --netconf-addr) for the NETCONF tests.

Tests leave the agent as they found it (the `port` fixture empties the k8s connections and the
candidate afterwards), so one process serves them all and the suite stays fast on two cores.
"""
from __future__ import annotations

import pytest

from tests.agentproc import AgentProcess, free_port

from .helpers import InProcessAgent


@pytest.fixture(scope="session")
def nc_agent(tmp_path_factory):
    """A running agent with NETCONF on loopback; `.netconf_port` is its port."""
    port = free_port()
    proc = AgentProcess(tmp_path_factory.mktemp("nc"), extra_args=["--netconf-addr", f"127.0.0.1:{port}"])
    proc.netconf_port = port
    proc.start()
    yield proc
    try:
        proc.stop()
    except Exception:
        proc.kill()


@pytest.fixture
def port(nc_agent):
    """The agent's NETCONF port, with running/candidate emptied of k8s connections after the test."""
    from .helpers import connect

    yield nc_agent.netconf_port
    with connect(nc_agent.netconf_port) as m:
        m.discard_changes()
        m.edit_config(target="running", default_operation="none",
                      config='<config><k8s xmlns="urn:kubefabric:yang:kubefabric-k8s" '
                             'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"/></config>')


@pytest.fixture
def inproc(tmp_path):
    """A NetconfServer in this process on a real Datastore (state and history can be injected)."""
    agent = InProcessAgent(tmp_path).start()
    yield agent
    agent.stop()
