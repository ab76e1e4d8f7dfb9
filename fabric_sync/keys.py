"""Where one fabric's data lives in etcd.

Everything of a fabric sits under one prefix, so one watch follows it all:

- `config`            the fabric-scope config tree, one JSON value
                      ({"config": tree, "meta": {...}}): one key makes a
                      whole-tree guarded transaction a single compare.
- `nodes/<name>`      a member's persistent record (address, role,
                      last-seen); it outlives the agent, so offline nodes
                      stay listed.
- `online/<name>`     the same node's lease-bound key: present while the
                      agent's lease is alive.
- `locks/<name>`      a fabric-wide lock (``EtcdFabricStore.lock``), created
                      under the holder's membership lease (e.g. the one a node
                      holds while it moves a Kubernetes connection away from
                      an offline owner).
- `state/<node>/<kind>`  a node's per-node state of one kind (JSON, or zlib
                      when large); persistent, so the last value outlives the
                      node's agent.
"""
from __future__ import annotations

from dataclasses import dataclass

ROOT = "/kubefabric"


@dataclass(frozen=True)
class FabricKeys:
    """Key names for one fabric."""

    fabric: str

    def __post_init__(self) -> None:
        if not self.fabric or "/" in self.fabric:
            raise ValueError(f"invalid fabric name {self.fabric!r}")

    @property
    def prefix(self) -> bytes:
        return f"{ROOT}/{self.fabric}/".encode()

    @property
    def config(self) -> bytes:
        return self.prefix + b"config"

    def node(self, name: str) -> bytes:
        return self.prefix + b"nodes/" + name.encode()

    def online(self, name: str) -> bytes:
        return self.prefix + b"online/" + name.encode()

    def lock(self, name: str) -> bytes:
        return self.prefix + b"locks/" + name.encode()

    def state(self, node: str, kind: str) -> bytes:
        return self.prefix + b"state/" + node.encode() + b"/" + kind.encode()

    def classify(self, key: bytes) -> tuple[str, str]:
        """('config' | 'nodes' | 'online' | 'locks' | 'state' | 'other', name) of a key under the prefix.

        A state key's name is ``node/kind``.
        """
        rest = key[len(self.prefix):].decode(errors="replace")
        if rest == "config":
            return "config", ""
        kind, _, name = rest.partition("/")
        if kind in ("nodes", "online", "locks") and name:
            return kind, name
        if kind == "state" and name.count("/") == 1 and all(name.split("/")):
            return kind, name
        return "other", rest
