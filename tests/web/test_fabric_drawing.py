"""The web page draws the fabric: switches, their ports, the nodes plugged into them (a dual-homed node
with two cables) and the pods in the nodes -- live and, with the time slider, as it was before a cable
moved.  A real datastore, time machine and topology producer in process; Debian's chromium through
Playwright reads what the page shows."""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from agent.auth import Authenticator, UserEntry, hash_password
from agent.web.server import WebServer
from collectors.topology.producer import TOPOLOGY_KIND, TopologyProducer
from core import schema_paths
from core.datastore import Datastore
from core.history import HistoryStore
from fabric_sync.embedded import EmbeddedFabricStore
from tests.topology.conftest import Scripted, add_k8s_node, lldp_report, netlink_report
from tests.web.test_web import CHROMIUM, CHROMIUM_ARGS, get

VPORT = schema_paths.VPORT
PODS = {"10.244.1.2": ("web-a", "node1"), "10.244.1.3": ("api-a", "node1"), "10.244.2.2": ("web-b", "node2")}


@pytest.fixture
async def drawn(tmp_path):
    ds = Datastore("leaf1", tmp_path / "ds", EmbeddedFabricStore(tmp_path / "ds", "leaf1"))
    await ds.start()
    history = HistoryStore(tmp_path / "history.sqlite3")
    ds.history.attach(history)
    for node, address in (("node1", "10.0.0.1"), ("node2", "10.0.0.2")):
        add_k8s_node(ds, node, address)
    for ip, (pod, node) in PODS.items():
        row = {"ip": ip, "entity": pod, "namespace": "shop", "svc-name": "prod", "hostname": node, "power": "Running"}
        ds.state.upsert(VPORT, (ip,), row)
        history.set("vport", "prod", ip, "", row)
    lldp = Scripted(lldp_report(("eth1", "node1"), ("eth2", "node2")))
    topo = TopologyProducer(ds.state, ds.feed, history, ds, "leaf1", lldp=lldp, netlink=Scripted(netlink_report()),
                            interval=3600)
    await topo.start()
    ds.fabric_node_state("leaf2", TOPOLOGY_KIND, {"attachments": [
        {"port": "eth7", "cluster-name": "prod", "node": "node2", "learned-by": ["lldp"], "oper-status": "up",
         "in-discard-percent": 3.0, "out-discard-percent": 0.0}]}, 1)
    await asyncio.sleep(0.05)
    before = time.time()
    await asyncio.sleep(3.2)
    lldp.report = lldp_report(("eth3", "node1"), ("eth2", "node2"))    # node1's cable moves to eth3
    await topo.refresh()
    auth = Authenticator([UserEntry("viewer", hash_password("pw-Secret-9"), "read-only")])
    server = WebServer(ds, auth, addr="127.0.0.1:0")
    await server.start()
    yield server, before
    await server.stop()
    await topo.stop()
    ds.history.detach()
    history.close()
    await ds.stop()


async def test_fabric_endpoint_live_and_past(drawn):
    server, before = drawn
    status, live = await asyncio.to_thread(get, server.address, "/api/fabric", "viewer", "pw-Secret-9")
    assert status == 200 and live["source"] == "live"
    ports = {(s["name"], p["port"]): p for s in live["switches"] for p in s["ports"]}
    assert set(ports) == {("leaf1", "eth2"), ("leaf1", "eth3"), ("leaf2", "eth7")}
    assert [n["node"] for n in ports[("leaf1", "eth3")]["nodes"]] == ["node1"]
    assert [p["entity"] for p in ports[("leaf1", "eth3")]["nodes"][0]["pods"]] == ["api-a", "web-a"]
    assert ports[("leaf2", "eth7")]["in-discard-percent"] == 3.0
    status, past = await asyncio.to_thread(get, server.address, f"/api/fabric?at={before:.3f}", "viewer",
                                           "pw-Secret-9")
    assert status == 200 and past["source"] == "history"
    assert {(s["name"], p["port"]) for s in past["switches"] for p in s["ports"]} == \
        {("leaf1", "eth1"), ("leaf1", "eth2"), ("leaf2", "eth7")}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (run scripts/install-browser.sh)")
async def test_the_page_draws_the_fabric_and_the_slider_goes_back(drawn, tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed (run scripts/install-browser.sh)")
    from playwright.async_api import async_playwright

    server, before = drawn
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(http_credentials={"username": "viewer", "password": "pw-Secret-9"},
                                                viewport={"width": 1300, "height": 1400})
            page = await context.new_page()
            await page.goto(f"http://{server.address}/")
            await page.wait_for_selector("body[data-loaded=true]", timeout=15000)
            drawing = page.locator("#fabric-drawing")
            assert await drawing.locator("[data-switch]").count() == 2
            assert await drawing.locator('[data-port="leaf1:eth3"]').count() == 1
            assert "port discarding" in await drawing.locator('[data-port="leaf2:eth7"]').get_attribute("class")
            node2 = drawing.locator('[data-node="node2"]')
            assert await node2.locator("line.cable").count() == 2          # dual-homed: two cables
            assert "web-b" in await node2.text_content()
            assert "web-a" in await drawing.locator('[data-node="node1"]').text_content()
            await page.screenshot(path=str(tmp_path / "fabric-live.png"), full_page=True)
            # the slider, moved back to before the cable moved
            await page.select_option("#time-window", "900")
            await page.evaluate("""(back) => {
                const s = document.getElementById('time-slider');
                s.value = String(Number(s.max) - back);
                s.dispatchEvent(new Event('change'));
            }""", int(time.time() - before) - 1)      # one second or two after `before`: node1 still on eth1
            await page.wait_for_selector('#fabric-drawing [data-port="leaf1:eth1"]', timeout=15000)
            assert (await page.inner_text("#topology-source")).startswith("at ")
            assert await drawing.locator('[data-port="leaf1:eth3"]').count() == 0
            await page.screenshot(path=str(tmp_path / "fabric-past.png"), full_page=True)
        finally:
            await browser.close()
    keep = Path("/tmp/kubefabric-web-screenshots")
    keep.mkdir(exist_ok=True)
    for name in ("fabric-live.png", "fabric-past.png"):
        shutil.copy(tmp_path / name, keep / name)
