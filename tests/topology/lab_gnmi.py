"""A pygnmi Get with a prefix target, for the topology lab (run inside its management namespace).

    python -m tests.topology.lab_gnmi ADDR USER PASSWORD PATH TARGET     -> the reply as JSON on stdout
"""
from __future__ import annotations

import json
import sys

from pygnmi.client import gNMIclient


def main(addr: str, user: str, password: str, path: str, target: str) -> None:
    host, _, port = addr.rpartition(":")
    with gNMIclient(target=(host, int(port)), username=user, password=password, insecure=True, gnmi_timeout=30) as gc:
        reply = gc.get(path=[path], target=target, encoding="json_ietf")
    print(json.dumps(reply, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:6])
