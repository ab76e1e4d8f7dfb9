"""The read-only web page: a real agent process watching the simulated cluster, driven in headless Chromium.

The agent watches the fake Kubernetes API server (connection created
through gNMI Set, as an operator would), the simulated switch sends it
sFlow when the collector is in this build, and Playwright drives Debian's
chromium: DOM assertions on what the page shows plus a screenshot written
under the test's tmp dir.
"""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.agentproc import USERS, AgentProcess, free_port

pytest.importorskip("agent.gnmi.server", reason="the gNMI face has not landed yet")
pytest.importorskip("collectors.k8s.manager", reason="the Kubernetes collector has not landed yet")
sim = pytest.importorskip("sim.k8s_apiserver", reason="the simulated Kubernetes API server has not landed yet")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _has_sflow_collector() -> bool:
    import importlib.util

    return importlib.util.find_spec("collectors.sflow.collector") is not None


def get(addr: str, path: str, user: str | None = "viewer", password: str | None = None):
    """(status, JSON or text body) of a GET with HTTP Basic credentials."""
    request = urllib.request.Request(f"http://{addr}{path}")
    if user is not None:
        password = password if password is not None else USERS[user][0]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            status = response.status
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    return status, json.loads(body) if kind.startswith("application/json") else body


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(predicate)
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def cluster(tmp_path):
    server = sim.FakeApiServer(bookmark_interval=0.5)
    server.load_scenario("flannel-vxlan", nodes=3)
    server.populate(12, namespaces=("shop",), apps_per_namespace=3)
    server.add_service("storefront", "shop", selector={"app": "shop-app0"}, svc_type="NodePort")
    await server.start()
    server.write_kubeconfig(tmp_path / "kubeconfig", cluster_name="sim")
    yield server
    await server.stop()


@pytest.fixture
async def web_agent(tmp_path, cluster):
    web_port = free_port()
    extra = ["--web-addr", f"127.0.0.1:{web_port}"]
    sflow_port = None
    if _has_sflow_collector():
        sflow_port = free_port()
        extra += ["--sflow-addr", f"127.0.0.1:{sflow_port}"]
    agent = AgentProcess(tmp_path, extra_args=extra)
    await asyncio.to_thread(agent.start)
    agent.web_addr = f"127.0.0.1:{web_port}"
    agent.sflow_port = sflow_port
    from pygnmi.client import gNMIclient

    def configure():
        with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
            gc.set(update=[
                ("/kubefabric-k8s:k8s/connection[cluster-name=sim]",
                 {"cluster-name": "sim", "kube-config": str(tmp_path / "kubeconfig"), "enable": True,
                  "create-vport": True, "overlay-vxlan-analytics": True}),
                ("/kubefabric-connection:connection-stats-settings", {"enable": True}),
            ], encoding="json_ietf")

    await asyncio.to_thread(configure)
    yield agent
    await asyncio.to_thread(agent.stop)


def test_every_request_needs_credentials_of_a_configured_user(tmp_path):
    """No agent needed beyond one process: 401 without, with a wrong password; any role reads."""
    port = free_port()
    agent = AgentProcess(tmp_path, extra_args=["--web-addr", f"127.0.0.1:{port}"]).start()
    try:
        addr = f"127.0.0.1:{port}"
        status, _ = get(addr, "/", user=None)
        assert status == 401
        status, _ = get(addr, "/api/summary", user="admin", password="wrong")
        assert status == 401
        status, _ = get(addr, "/static/app.js", user=None)
        assert status == 401
        status, body = get(addr, "/api/summary", user="viewer")
        assert status == 200 and body["node"] == "leaf1" and body["user"] == "viewer"
        status, _ = get(addr, "/api/vports?at=yesterday")
        assert status == 400
        status, body = get(addr, "/api/changes?from=1700000100&to=1700000000")
        assert status == 400 and "before" in body
        request = urllib.request.Request(f"http://{addr}/api/summary", method="POST")
        request.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin-Secret-1").decode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 405
    finally:
        agent.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (run scripts/install-browser.sh)")
async def test_page_shows_fabric_vports_services_graph_and_time_machine(web_agent, cluster, tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed (run scripts/install-browser.sh)")
    from playwright.async_api import async_playwright

    addr = web_agent.web_addr
    pods = {p["metadata"]["name"] for p in cluster.objects("pods") if p["status"].get("podIP")}

    def vports_complete():
        status, body = get(addr, "/api/vports")
        return status == 200 and {v.get("entity") for v in body["vports"]} >= pods and body

    await wait_for(vports_complete, what="every pod in the vPort table")
    exporter = None
    if web_agent.sflow_port:
        from sim.sflow_exporter import SflowExporter, pods_from_objects

        exporter = SflowExporter([("127.0.0.1", web_agent.sflow_port)],
                                 lambda: pods_from_objects(cluster.objects("pods"), cluster.objects("nodes")),
                                 rate=50, conversations=12, seed=7)
        await exporter.start()
    try:
        await asyncio.sleep(1.5)
        before = time.time()
        await asyncio.sleep(1.5)
        gone, new = cluster.churn_step()

        def churned():
            status, body = get(addr, "/api/vports")
            names = {v.get("entity") for v in body["vports"]}
            return new in names and gone not in names

        await wait_for(churned, what="the pod churn in the vPort table")
        if exporter is not None:
            await wait_for(lambda: get(addr, "/api/connections")[1]["total"] > 0, what="connections from sFlow")

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(
                    http_credentials={"username": "viewer", "password": USERS["viewer"][0]},
                    viewport={"width": 1400, "height": 1800})
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"http://{addr}/")
                await page.wait_for_selector("body[data-loaded=true]", timeout=15000)

                assert await page.inner_text("#node-name") == "leaf1"
                assert "leaf1" in await page.inner_text("#fabric-nodes")
                k8s = await page.inner_text("#k8s-connections")
                assert "sim" in k8s and "connected" in k8s and "flannel" in k8s
                hosts = await page.eval_on_selector_all("#vports .host-group", "els => els.map(e => e.dataset.host)")
                assert sorted(hosts) == ["worker-001", "worker-002", "worker-003"]
                live_vports = await page.inner_text("#vports")
                assert new in live_vports and gone not in live_vports
                services = await page.inner_text("#services")
                assert "storefront" in services and "NodePort" in services
                # backends are rendered from the backend list, each with its pod, address and conditions
                status, api = get(addr, "/api/services")
                backend = next(b for s in api["services"] for b in s["backends"] if b.get("pod"))
                assert f"{backend['pod']} {backend['ip']}:{backend['port']}" in services and "(ready" in services
                assert await page.is_enabled("#time-slider")
                # the churn shows as ticks under the slider: the new pod's vPort came, the old one's went
                titles = await page.eval_on_selector_all("#time-ticks line.tick.vport title", "els => els.map(e => e.textContent)")
                assert any(f"+ vport {new}" in t for t in titles) and any(f"- vport {gone}" in t for t in titles), titles

                if exporter is not None:
                    await page.wait_for_function(
                        "() => document.querySelectorAll('#conn-graph path.edge').length > 0", timeout=15000)
                    talkers = await page.inner_text("#talkers")
                    assert "shop/" in talkers and "8080" in talkers

                await page.screenshot(path=str(tmp_path / "web-live.png"), full_page=True)

                # the time slider: back to a moment before the churn
                await page.select_option("#time-window", "900")
                await page.wait_for_selector("body[data-loaded=true]")
                maximum = int(await page.eval_on_selector("#time-slider", "e => e.max"))
                assert maximum == 900
                value = maximum - round(time.time() - before)
                await page.eval_on_selector(
                    "#time-slider",
                    "(e, v) => { e.value = String(v); e.dispatchEvent(new Event('change')); }", value)
                await page.wait_for_function(
                    "() => document.getElementById('vport-count').textContent.includes(' at ')", timeout=10000)
                assert "live" not in await page.inner_text("#time-label")
                past_vports = await page.inner_text("#vports")
                assert gone in past_vports and new not in past_vports
                assert "at " in await page.inner_text("#service-source")
                await page.screenshot(path=str(tmp_path / "web-past.png"), full_page=True)

                await page.click("#time-live")
                await page.wait_for_function(
                    "() => document.getElementById('vport-count').textContent.includes('(live)')", timeout=10000)
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        if exporter is not None:
            await exporter.stop()
    png = (tmp_path / "web-live.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    keep = Path("/tmp/kubefabric-web-screenshots")
    keep.mkdir(exist_ok=True)
    for name in ("web-live.png", "web-past.png"):
        shutil.copy(tmp_path / name, keep / name)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (run scripts/install-browser.sh)")
async def test_slider_says_history_is_unavailable_without_a_history_store(tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed (run scripts/install-browser.sh)")
    from playwright.async_api import async_playwright

    from agent.auth import Authenticator, UserEntry, hash_password
    from core.datastore import Datastore
    from agent.web.server import WebServer
    from fabric_sync.embedded import EmbeddedFabricStore

    ds = Datastore("leaf7", tmp_path, EmbeddedFabricStore(tmp_path, "leaf7"))
    await ds.start()
    auth = Authenticator([UserEntry("viewer", hash_password("pw-Secret-9"), "read-only")])
    server = WebServer(ds, auth, addr="127.0.0.1:0")
    await server.start()
    try:
        assert not ds.history.available
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(http_credentials={"username": "viewer", "password": "pw-Secret-9"})
                page = await context.new_page()
                await page.goto(f"http://{server.address}/")
                await page.wait_for_selector("body[data-loaded=true]", timeout=15000)
                assert "history is unavailable" in await page.inner_text("#history-note")
                assert not await page.is_enabled("#time-slider")
                assert "no vPorts yet" in await page.inner_text("#vports")
            finally:
                await browser.close()
        status, body = await asyncio.to_thread(get, server.address, "/api/vports?at=1700000000", "x", "y")
        assert status == 401
    finally:
        await server.stop()
        await ds.stop()
