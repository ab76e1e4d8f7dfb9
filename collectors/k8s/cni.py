"""CNI detection (Netvisor's k8s-cni-show): pure functions over Kubernetes API objects.

Inputs are the raw JSON objects as the API server returns them; nothing
here does I/O.  :func:`detect` looks at, in order of evidence:

* Flannel: the ``kube-flannel-cfg`` ConfigMap (namespace kube-flannel or
  kube-system) and Canal's ``canal-config``, whose ``net-conf.json`` holds
  ``Network``, ``Backend.Type``, ``Backend.VNI`` (default 1) and
  ``Backend.Port`` (default 8472); without a ConfigMap (k3s embeds
  Flannel) the node annotations ``flannel.alpha.coreos.com/backend-type``
  and ``backend-data`` and k3s's ``k3s.io/node-args`` (``--flannel-backend``).
* Calico: IPPools (``crd.projectcalico.org/v1`` and ``projectcalico.org/v3``)
  with ``ipipMode``/``vxlanMode``, the ``default`` FelixConfiguration's
  ``vxlanPort``/``vxlanVNI`` (defaults 4789/4096), the operator's
  ``Installation`` (``operator.tigera.io/v1``, ``calicoNetwork.ipPools[].encapsulation``)
  and the ``calico-config`` ConfigMap's ``calico_backend``; node
  annotations ``projectcalico.org/IPv4*`` as last resort.

Anything else is reported as cni-plugin ``unknown`` / network-type
``unknown``: never guessed.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

__all__ = ["CniInfo", "CniSources", "detect", "detect_flannel", "detect_calico",
           "FLANNEL_CONFIGMAPS", "CNI_CONFIGMAPS", "CNI_CONFIGMAP_NAMES"]

FLANNEL_VXLAN_PORT = 8472      # Linux kernel default, what flannel uses unless Backend.Port is set
FLANNEL_VXLAN_VNI = 1
FLANNEL_UDP_PORT = 8285
CALICO_VXLAN_PORT = 4789
CALICO_VXLAN_VNI = 4096

FLANNEL_CONFIGMAPS = (("kube-flannel", "kube-flannel-cfg"), ("kube-system", "kube-flannel-cfg"))
CANAL_CONFIGMAP = ("kube-system", "canal-config")
CALICO_CONFIGMAP = ("kube-system", "calico-config")
CNI_CONFIGMAPS = (*FLANNEL_CONFIGMAPS, CANAL_CONFIGMAP, CALICO_CONFIGMAP)   # (namespace, name) detection reads
CNI_CONFIGMAP_NAMES = frozenset(name for _, name in CNI_CONFIGMAPS)

# flannel backend type -> (network-type, encapsulation)
_FLANNEL_BACKENDS = {
    "vxlan": ("overlay", "vxlan"),
    "udp": ("overlay", "udp"),
    "ipip": ("overlay", "ipip"),
    "wireguard": ("overlay", "wireguard"),
    "extension": ("unknown", ""),
    "host-gw": ("underlay", ""),
    "alloc": ("underlay", ""),
    "aws-vpc": ("underlay", ""),
    "gce": ("underlay", ""),
    "ali-vpc": ("underlay", ""),
    "tencent-vpc": ("underlay", ""),
    "ipsec": ("overlay", "ipsec"),
}
# k3s --flannel-backend values -> flannel backend type
_K3S_BACKENDS = {"vxlan": "vxlan", "host-gw": "host-gw", "wireguard-native": "wireguard",
                 "wireguard": "wireguard", "ipsec": "ipsec"}
_ON = ("always", "crosssubnet")


@dataclass(frozen=True)
class CniInfo:
    """What k8s-cni-show prints for one cluster."""

    cni_plugin: str = "unknown"
    backend: str = ""
    udp_port: int | None = None
    vni: int | None = None
    network_type: str = "unknown"
    pod_network: tuple[str, ...] = ()
    source: str = "no Flannel or Calico configuration found"
    encapsulation: str = ""

    def row(self) -> dict:
        """The k8s/cni leaves (cluster-name excluded; unset leaves left out)."""
        row: dict = {"cni-plugin": self.cni_plugin, "network-type": self.network_type, "source": self.source,
                     "pod-network": list(self.pod_network)}
        if self.backend:
            row["backend"] = self.backend
        if self.udp_port is not None:
            row["udp-port"] = self.udp_port
        if self.vni is not None:
            row["vxlan"] = self.vni
        return row

    def overlay_port(self) -> tuple[int, int, str] | None:
        """(udp port, VNI, encapsulation) when the cluster runs a VXLAN overlay."""
        if self.encapsulation == "vxlan" and self.udp_port is not None:
            return (self.udp_port, self.vni if self.vni is not None else 0, "vxlan")
        return None


@dataclass
class CniSources:
    """The objects detection reads, as the watchers hold them."""

    configmaps: dict[tuple[str, str], dict] = field(default_factory=dict)   # (namespace, name) -> ConfigMap
    nodes: list[dict] = field(default_factory=list)
    ippools: list[dict] = field(default_factory=list)          # both API groups
    felix: list[dict] = field(default_factory=list)            # FelixConfiguration
    installations: list[dict] = field(default_factory=list)    # operator.tigera.io/v1 Installation


def detect(src: CniSources) -> CniInfo:
    """The CNI of a cluster from its API objects; :class:`CniInfo` defaults when unknown."""
    flannel = detect_flannel(src)
    calico = detect_calico(src)
    if flannel and calico:
        # both configured (a migration leaves the old ConfigMap behind): trust what the nodes run
        if flannel.source.startswith("ConfigMap kube-system/canal-config"):
            return flannel
        if _calico_node_count(src.nodes) > _flannel_node_count(src.nodes):
            return calico
        return flannel
    return flannel or calico or CniInfo()


# ------------------------------------------------------------------ flannel

def detect_flannel(src: CniSources) -> CniInfo | None:
    """Flannel (or Canal's flannel) configuration, or None."""
    for ns, name in (CANAL_CONFIGMAP, *FLANNEL_CONFIGMAPS):
        cm = src.configmaps.get((ns, name))
        if cm is None:
            continue
        netconf = _net_conf(cm)
        if netconf is None:
            continue
        info = _flannel_from_netconf(netconf, f"ConfigMap {ns}/{name}" + (" (canal)" if name == "canal-config" else ""))
        if info is not None:
            return info
    return _flannel_from_nodes(src.nodes)


def _net_conf(cm: Mapping) -> dict | None:
    text = (cm.get("data") or {}).get("net-conf.json")
    if not text:
        return None
    try:
        conf = json.loads(text)
    except (TypeError, ValueError):
        return None
    return conf if isinstance(conf, dict) else None


def _flannel_from_netconf(conf: Mapping, source: str) -> CniInfo | None:
    backend_conf = conf.get("Backend") or {}
    if not isinstance(backend_conf, Mapping):
        backend_conf = {}
    btype = str(backend_conf.get("Type") or "udp").lower()   # flannel's own default backend is udp
    networks = [n for n in (conf.get("Network"), conf.get("IPv6Network")) if isinstance(n, str) and n]
    return _flannel_info(btype, backend_conf, networks, source)


def _flannel_info(btype: str, backend_conf: Mapping, networks: list[str], source: str) -> CniInfo:
    network_type, encap = _FLANNEL_BACKENDS.get(btype, ("unknown", ""))
    port = vni = None
    if btype == "vxlan":
        port = _int(backend_conf.get("Port"), FLANNEL_VXLAN_PORT)
        vni = _int(backend_conf.get("VNI"), FLANNEL_VXLAN_VNI)
    elif btype == "udp":
        port = _int(backend_conf.get("Port"), FLANNEL_UDP_PORT)
    backend = btype
    if btype == "vxlan" and backend_conf.get("DirectRouting"):
        source += "; DirectRouting: same-subnet nodes route unencapsulated"
    return CniInfo("flannel", backend, port, vni, network_type, tuple(_prefixes(networks)), source, encap)


def _flannel_node_count(nodes: Iterable[Mapping]) -> int:
    return sum(1 for n in nodes if "flannel.alpha.coreos.com/backend-type" in _annotations(n))


def _flannel_from_nodes(nodes: list[dict]) -> CniInfo | None:
    btype = ""
    backend_data: Mapping = {}
    source = ""
    for node in nodes:
        ann = _annotations(node)
        if ann.get("flannel.alpha.coreos.com/backend-type"):
            btype = str(ann["flannel.alpha.coreos.com/backend-type"]).lower()
            try:
                data = json.loads(ann.get("flannel.alpha.coreos.com/backend-data") or "{}")
                backend_data = data if isinstance(data, Mapping) else {}
            except ValueError:
                backend_data = {}
            source = f"node annotations flannel.alpha.coreos.com/* ({_name(node)})"
            break
    k3s_backend = _k3s_flannel_backend(nodes)
    if not btype and k3s_backend is None:
        return None
    if k3s_backend == "none" and not btype:
        return None  # k3s with flannel disabled: another CNI runs
    if not btype:
        btype = _K3S_BACKENDS.get(k3s_backend or "vxlan", k3s_backend or "vxlan")
        source = "node annotation k3s.io/node-args (--flannel-backend)"
    elif k3s_backend:
        source += "; k3s"
    conf = {"VNI": backend_data.get("VNI"), "Port": backend_data.get("Port")} if btype == "vxlan" else {}
    cidrs = [c for n in nodes for c in _node_pod_cidrs(n)]
    return _flannel_info(btype, conf, [str(p) for p in ipaddress.collapse_addresses(_v4(cidrs))] +
                         [str(p) for p in ipaddress.collapse_addresses(_v6(cidrs))], source)


def _k3s_flannel_backend(nodes: list[dict]) -> str | None:
    """--flannel-backend of the first k3s node: value, "vxlan" (k3s default) or None when not k3s."""
    for node in nodes:
        raw = _annotations(node).get("k3s.io/node-args")
        if raw is None:
            continue
        try:
            args = json.loads(raw)
        except ValueError:
            args = str(raw).split()
        if not isinstance(args, list):
            continue
        args = [str(a) for a in args]
        for i, arg in enumerate(args):
            if arg.startswith("--flannel-backend="):
                return arg.split("=", 1)[1].lower()
            if arg == "--flannel-backend" and i + 1 < len(args):
                return args[i + 1].lower()
        return "vxlan"
    return None


# ------------------------------------------------------------------ calico

def detect_calico(src: CniSources) -> CniInfo | None:
    """Calico configuration, or None."""
    felix = _default_felix(src.felix)
    port = _int(felix.get("vxlanPort"), CALICO_VXLAN_PORT)
    vni = _int(felix.get("vxlanVNI"), CALICO_VXLAN_VNI)
    felix_note = "; FelixConfiguration default" if felix else ""

    pools = [p for p in _dedupe_pools(src.ippools) if not (p.get("spec") or {}).get("disabled")]
    if pools:
        cidrs = [str((p.get("spec") or {}).get("cidr") or "") for p in pools]
        vxlan = [p for p in pools if str((p.get("spec") or {}).get("vxlanMode") or "Never").lower() in _ON]
        ipip = [p for p in pools if str((p.get("spec") or {}).get("ipipMode") or "Never").lower() in _ON]
        names = ", ".join(f"{_name(p)} ({p.get('apiVersion', '?')})" for p in pools)
        if vxlan:
            mode = (vxlan[0].get("spec") or {}).get("vxlanMode")
            return CniInfo("calico", "vxlan", port, vni, "overlay", tuple(_prefixes(cidrs)),
                           f"IPPool {names} vxlanMode {mode}{felix_note}", "vxlan")
        if ipip:
            mode = (ipip[0].get("spec") or {}).get("ipipMode")
            return CniInfo("calico", "ipip", None, None, "overlay", tuple(_prefixes(cidrs)),
                           f"IPPool {names} ipipMode {mode}", "ipip")
        backend = _calico_backend_from_configmap(src) or "bird"
        return CniInfo("calico", backend, None, None, "underlay", tuple(_prefixes(cidrs)),
                       f"IPPool {names} ipipMode Never, vxlanMode Never")

    install = _default_installation(src.installations)
    if install is not None:
        spec = install.get("spec") or {}
        cni_type = str((spec.get("cni") or {}).get("type") or "Calico")
        network = spec.get("calicoNetwork") or {}
        ip_pools = [p for p in (network.get("ipPools") or []) if isinstance(p, Mapping)]
        cidrs = [str(p.get("cidr") or "") for p in ip_pools]
        source = f"Installation {_name(install)} (operator.tigera.io/v1)"
        if cni_type.lower() != "calico":
            return CniInfo("calico", cni_type.lower(), None, None, "underlay", tuple(_prefixes(cidrs)),
                           source + f" cni.type {cni_type} (Calico policy only)")
        encaps = [str(p.get("encapsulation") or "IPIP") for p in ip_pools] or ["IPIP"]
        if any(e.lower().startswith("vxlan") for e in encaps):
            return CniInfo("calico", "vxlan", port, vni, "overlay", tuple(_prefixes(cidrs)),
                           source + f" encapsulation {encaps[0]}{felix_note}", "vxlan")
        if any(e.lower().startswith("ipip") for e in encaps):
            return CniInfo("calico", "ipip", None, None, "overlay", tuple(_prefixes(cidrs)),
                           source + f" encapsulation {encaps[0]}", "ipip")
        bgp = str(network.get("bgp") or "Enabled").lower()
        return CniInfo("calico", "bird" if bgp == "enabled" else "none", None, None, "underlay",
                       tuple(_prefixes(cidrs)), source + " encapsulation None")

    backend = _calico_backend_from_configmap(src)
    if backend is not None:
        source = f"ConfigMap {CALICO_CONFIGMAP[0]}/{CALICO_CONFIGMAP[1]} calico_backend {backend}"
        if backend == "vxlan":
            return CniInfo("calico", "vxlan", port, vni, "overlay", (), source + felix_note, "vxlan")
        if backend == "bird":
            # bird carries both BGP-routed and IP-in-IP pools; without IPPools we cannot tell
            return CniInfo("calico", "bird", None, None, "unknown", (), source + " (IPPools not readable)")
        return CniInfo("calico", backend, None, None, "unknown", (), source)

    return _calico_from_nodes(src.nodes, port, vni)


def _calico_backend_from_configmap(src: CniSources) -> str | None:
    cm = src.configmaps.get(CALICO_CONFIGMAP)
    if cm is None:
        return None
    value = (cm.get("data") or {}).get("calico_backend")
    return str(value).strip().lower() if value else None


def _calico_node_count(nodes: Iterable[Mapping]) -> int:
    return sum(1 for n in nodes if any(k.startswith("projectcalico.org/IPv4Address") for k in _annotations(n)))


def _calico_from_nodes(nodes: list[dict], port: int, vni: int) -> CniInfo | None:
    vxlan = ipip = calico = False
    for node in nodes:
        ann = _annotations(node)
        calico |= any(k.startswith("projectcalico.org/") for k in ann)
        vxlan |= "projectcalico.org/IPv4VXLANTunnelAddr" in ann
        ipip |= "projectcalico.org/IPv4IPIPTunnelAddr" in ann
    if not calico:
        return None
    source = "node annotations projectcalico.org/*"
    if vxlan:
        return CniInfo("calico", "vxlan", port, vni, "overlay", (), source + " (IPv4VXLANTunnelAddr)", "vxlan")
    if ipip:
        return CniInfo("calico", "ipip", None, None, "overlay", (), source + " (IPv4IPIPTunnelAddr)", "ipip")
    return CniInfo("calico", "bird", None, None, "underlay", (), source + " (no tunnel address)")


def _dedupe_pools(pools: Iterable[dict]) -> list[dict]:
    """The same pool is visible through both API groups; keep one per name (v3 first)."""
    by_name: dict[str, dict] = {}
    for pool in sorted(pools, key=lambda p: 0 if str(p.get("apiVersion", "")).startswith("projectcalico.org/") else 1):
        by_name.setdefault(_name(pool), pool)
    return [by_name[k] for k in sorted(by_name)]


def _default_felix(objs: Iterable[dict]) -> dict:
    for obj in objs:
        if _name(obj) == "default":
            return obj.get("spec") or {}
    return {}


def _default_installation(objs: Iterable[dict]) -> dict | None:
    objs = list(objs)
    for obj in objs:
        if _name(obj) == "default":
            return obj
    return objs[0] if objs else None


# ------------------------------------------------------------------ helpers

def _annotations(obj: Mapping) -> Mapping:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _name(obj: Mapping) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _int(value: object, default: int) -> int:
    if value in (None, "", 0):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _node_pod_cidrs(node: Mapping) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


def _prefixes(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            continue
    return out


def _v4(cidrs: list[str]) -> list:
    return [n for n in (_net(c) for c in cidrs) if n is not None and n.version == 4]


def _v6(cidrs: list[str]) -> list:
    return [n for n in (_net(c) for c in cidrs) if n is not None and n.version == 6]


def _net(c: str):
    try:
        return ipaddress.ip_network(c, strict=False)
    except ValueError:
        return None
