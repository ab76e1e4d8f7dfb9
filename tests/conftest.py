"""Fixtures shared by every test package."""
from __future__ import annotations

import pytest

from tests.agentproc import SHARED, AgentProcess, free_port  # noqa: F401  (re-exported for tests)


@pytest.fixture
def agent_factory(tmp_path):
    """Start real agents: `agent_factory(node_name="leaf1", extra_args=[...])`; all stopped at teardown."""
    started: list[AgentProcess] = []

    def make(**kwargs) -> AgentProcess:
        proc = AgentProcess(tmp_path, **kwargs)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        try:
            proc.stop()
        except Exception:
            proc.kill()


@pytest.fixture
def agent(agent_factory) -> AgentProcess:
    """One running agent with the default test users, gNMI without TLS on loopback."""
    return agent_factory()
