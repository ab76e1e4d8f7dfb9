"""Issue 13 item 7: the time machine answers for services and their backends (a YANG list, item 8) over gNMI's
History extension and the CLI, and a range whose end lies in the future streams until then.

A real Datastore and GnmiServer with a real HistoryStore (SQLite), written the way the Kubernetes
collector writes it (`service` rows, `member` rows = k8s/service/backend entries).
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from agent.auth import User
from agent.cli.backend import DatastoreBackend
from agent.cli.engine import Engine
from agent.gnmi_proto import gnmi_ext_pb2
from core.history import HistoryStore
from tests.gnmi.helpers import END, Harness, flat

SVC = {"cluster-name": "k8s01", "namespace": "shop", "name": "web", "type": "ClusterIP",
       "cluster-ips": ["10.96.0.10"], "ports": ["80/TCP->8080"], "backend-count": 1}


def backend(ip: str, pod: str, ready: bool = True) -> dict:
    return {"ip": ip, "port": 8080, "protocol": "TCP", "namespace": "shop", "pod": pod, "node": "w1",
            "ready": ready, "serving": ready, "terminating": not ready}


@pytest.fixture
async def h(tmp_path):
    harness = await Harness(tmp_path).start()
    store = HistoryStore(tmp_path / "history.sqlite3")
    harness.ds.history.attach(store)
    harness.store = store
    yield harness
    harness.ds.history.detach()
    store.close()
    await harness.stop()


def _history(**kw) -> list:
    return [gnmi_ext_pb2.Extension(history=gnmi_ext_pb2.History(**kw))]


async def test_backends_of_a_service_at_a_time_and_over_a_range(h):
    t0 = time.time() - 100
    h.store.set("service", "k8s01", "shop/web", "", SVC, t0)
    h.store.set("member", "k8s01", "shop/web", "10.244.1.5/8080", backend("10.244.1.5", "web-a"), t0)
    h.store.set("member", "k8s01", "shop/web", "10.244.2.7/8080", backend("10.244.2.7", "web-b"), t0 + 20)
    h.store.set("member", "k8s01", "shop/web", "10.244.1.5/8080", backend("10.244.1.5", "web-a", ready=False), t0 + 40)
    h.store.end("member", "k8s01", "shop/web", "10.244.1.5/8080", t0 + 50)
    entry = "/k8s/service[cluster-name=k8s01][name=web][namespace=shop]/backend"  # keys in name order
    # at t0+30: both backends, web-a still ready
    sub = h.subscribe(["/k8s/service"], mode="ONCE", extension=_history(snapshot_time=int((t0 + 30) * 1e9)))
    got = flat(await sub.until_sync())[0]
    assert got[f"{entry}[ip=10.244.1.5][port=8080]"]["pod"] == "web-a"
    assert got[f"{entry}[ip=10.244.1.5][port=8080]"]["ready"] is True
    assert got[f"{entry}[ip=10.244.2.7][port=8080]"]["pod"] == "web-b"
    # over [t0+10, t0+60): web-b arrives, web-a stops being ready, then goes
    rng = gnmi_ext_pb2.TimeRange(start=int((t0 + 10) * 1e9), end=int((t0 + 60) * 1e9))
    sub = h.subscribe(["/k8s/service[cluster-name=k8s01][namespace=shop][name=web]/backend"],
                      extension=_history(range=rng))
    first = flat(await sub.until_sync())[0]
    assert set(first) == {f"{entry}[ip=10.244.1.5][port=8080]"}
    notes = await sub.collect(5)
    events = []
    for n in notes:
        for u in n.update:
            events.append(("update", n.timestamp))
        for d in n.delete:
            events.append(("delete", n.timestamp))
    assert [e[0] for e in events] == ["update", "update", "delete"]
    assert [round(e[1] / 1e9 - t0) for e in events] == [20, 40, 50]


async def test_range_ending_in_the_future_streams_until_the_end(h):
    now = time.time()
    h.store.set("service", "k8s01", "shop/web", "", SVC, now - 10)
    end = now + 3
    rng = gnmi_ext_pb2.TimeRange(start=int((now - 20) * 1e9), end=int(end * 1e9))
    sub = h.subscribe(["/k8s/service"], extension=_history(range=rng))
    await sub.until_sync()
    await asyncio.sleep(0.5)
    h.store.set("member", "k8s01", "shop/web", "10.244.3.9/8080", backend("10.244.3.9", "web-late"), time.time())
    late = []
    while True:
        r = await sub.next(10)
        if r is END:
            break
        late.append(r.update)
    ended = time.time()
    assert sub.error is None
    assert any("web-late" in json.dumps(v) for v in flat(late)[0].values())  # recorded after the request: delivered
    assert ended >= end - 0.05  # and the RPC did not end before its end time


async def test_cli_service_backend_history(h):
    t0 = time.time() - 100
    h.store.set("service", "k8s01", "shop/web", "", SVC, t0)
    h.store.set("member", "k8s01", "shop/web", "10.244.1.5/8080", backend("10.244.1.5", "web-a"), t0)
    h.store.end("member", "k8s01", "shop/web", "10.244.1.5/8080", t0 + 50)
    h.store.set("member", "k8s01", "shop/web", "10.244.2.7/8080", backend("10.244.2.7", "web-b"), t0 + 50)
    engine = Engine(DatastoreBackend(h.ds, User("admin", "network-admin")), as_json=True)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + 10))
    rows = json.loads((await engine.run(f"service-backend-history-show snapshot-time {at} name web")).output)
    assert [(r["pod"], r["ip"], r["port"]) for r in rows] == [("web-a", "10.244.1.5", 8080)]
    rows = json.loads((await engine.run("service-backend-history-show within-last 1h")).output)
    assert [(r["change"], r["pod"]) for r in rows] == [("update", "web-a"), ("delete", "web-a"), ("update", "web-b")]
    rows = json.loads((await engine.run(f"service-history-show snapshot-time {at}")).output)
    assert rows[0]["name"] == "web" and rows[0]["cluster-ips"] == ["10.96.0.10"]
