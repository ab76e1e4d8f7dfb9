"""Print every committed version of one etcd key as JSON [[mod_revision, config-tree], ...], oldest first.

    python -m tests.fabric.etcd_history ENDPOINTS CA CERT KEY SERVER_NAME KEY

A watch from revision 1 replays the key's whole history (nothing is
compacted in the tests); the partition test checks every value a subscriber
saw and every acknowledged write against it.
"""
from __future__ import annotations

import asyncio
import json
import sys

from fabric_sync.etcd_client import make_client
from fabric_sync.security import EtcdSecurity


async def history(endpoints: str, ca: str, cert: str, key: str, server_name: str, name: str) -> list:
    client = make_client(endpoints.split(","), 10, EtcdSecurity(ca=ca, cert=cert, key=key, server_name=server_name))
    out: list = []
    try:
        current = await client.get(name.encode())
        if current is None:
            return out
        last = current.mod_revision
        watch = await client.watch(name.encode(), start_revision=1)
        async for event in watch:
            value = json.loads(event.kv.value) if event.kv.value else {}
            out.append([event.kv.mod_revision, value.get("config", {})])
            if event.kv.mod_revision >= last:
                break
    finally:
        await client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(asyncio.wait_for(history(*sys.argv[1:7]), 30))))
