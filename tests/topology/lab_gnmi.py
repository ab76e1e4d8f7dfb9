"""gNMI Gets for the topology lab (run inside its management namespace); the reply as JSON on stdout.

    python -m tests.topology.lab_gnmi ADDR USER PASSWORD PATH TARGET           pygnmi Get with a prefix target
    python -m tests.topology.lab_gnmi ADDR USER PASSWORD P1|P2 TARGET EPOCH    one Get of both paths with the
                                                                                History extension's snapshot_time
"""
from __future__ import annotations

import json
import sys

import grpc
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_ext_pb2, gnmi_pb2, gnmi_pb2_grpc


def history_get(addr: str, user: str, password: str, paths: list[str], target: str, at: float) -> dict:
    def path(text: str) -> gnmi_pb2.Path:
        return gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=n) for n in text.strip("/").split("/")])

    request = gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[path(p) for p in paths],
                                  encoding=gnmi_pb2.Encoding.Value("JSON_IETF"),
                                  extension=[gnmi_ext_pb2.Extension(history=gnmi_ext_pb2.History(
                                      snapshot_time=int(at * 1e9)))])
    with grpc.insecure_channel(addr) as channel:
        reply = gnmi_pb2_grpc.gNMIStub(channel).Get(request, metadata=(("username", user), ("password", password)),
                                                    timeout=30)
    return {"notification": [{"target": n.prefix.target, "timestamp": n.timestamp, "update": [
        {"path": "/".join(e.name for e in u.path.elem), "keys": {k: v for e in u.path.elem for k, v in e.key.items()},
         "val": json.loads(u.val.json_ietf_val)} for u in n.update]}
        for n in reply.notification]}


def main(addr: str, user: str, password: str, path: str, target: str, at: str | None = None) -> None:
    if at is not None:
        print(json.dumps(history_get(addr, user, password, path.split("|"), target, float(at))))
        return
    host, _, port = addr.rpartition(":")
    with gNMIclient(target=(host, int(port)), username=user, password=password, insecure=True, gnmi_timeout=30) as gc:
        reply = gc.get(path=[path], target=target, encoding="json_ietf")
    print(json.dumps(reply, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:7])
