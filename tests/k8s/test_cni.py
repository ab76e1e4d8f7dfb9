"""CNI detection over real-shaped objects (the fixtures the fake API server serves)."""
import json

import pytest

from collectors.k8s.cni import CniInfo, CniSources, detect
from sim.k8s_apiserver import FIXTURES


def sources(scenario: str, nodes: int = 2) -> CniSources:
    fx = json.loads((FIXTURES / f"{scenario}.json").read_text())
    src = CniSources()
    for obj in fx["objects"]:
        kind = obj["kind"]
        if kind == "ConfigMap":
            src.configmaps[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        elif kind == "IPPool":
            src.ippools.append(obj)
        elif kind == "FelixConfiguration":
            src.felix.append(obj)
        elif kind == "Installation":
            src.installations.append(obj)
    for i in range(nodes):
        ann = {k: v.replace("{node_ip}", f"192.168.1.{10 + i}").replace("{i}", str(i)).replace("{vtep_mac}", "0a:00:00:00:00:01")
               .replace("{node}", f"n{i}") for k, v in fx["node_annotations"].items()}
        src.nodes.append({"metadata": {"name": f"n{i}", "annotations": ann},
                          "spec": {"podCIDR": f"10.42.{i}.0/24", "podCIDRs": [f"10.42.{i}.0/24"]}})
    return src


def test_flannel_vxlan_defaults():
    info = detect(sources("flannel-vxlan"))
    assert (info.cni_plugin, info.backend, info.network_type) == ("flannel", "vxlan", "overlay")
    assert (info.udp_port, info.vni) == (8472, 1)
    assert info.pod_network == ("10.244.0.0/16",)
    assert info.source == "ConfigMap kube-flannel/kube-flannel-cfg"
    assert info.overlay_port() == (8472, 1, "vxlan")


def test_flannel_vxlan_custom_vni_and_port():
    info = detect(sources("flannel-vxlan-custom"))
    assert (info.udp_port, info.vni, info.pod_network) == (4789, 42, ("10.96.0.0/12",))


def test_flannel_host_gw_is_underlay_like_the_netvisor_example():
    info = detect(sources("flannel-host-gw"))
    assert (info.cni_plugin, info.backend, info.network_type) == ("flannel", "host-gw", "underlay")
    assert info.udp_port is None and info.vni is None and info.overlay_port() is None
    assert info.source == "ConfigMap kube-system/kube-flannel-cfg"
    assert info.row() == {"cni-plugin": "flannel", "backend": "host-gw", "network-type": "underlay",
                          "pod-network": ["10.244.0.0/16"], "source": "ConfigMap kube-system/kube-flannel-cfg"}


@pytest.mark.parametrize("backend, network_type", [
    ("wireguard", "overlay"), ("udp", "overlay"), ("ipip", "overlay"), ("host-gw", "underlay"), ("vxlan", "overlay")])
def test_flannel_backends(backend, network_type):
    src = sources("flannel-vxlan")
    cm = src.configmaps[("kube-flannel", "kube-flannel-cfg")]
    cm["data"]["net-conf.json"] = json.dumps({"Network": "10.244.0.0/16", "Backend": {"Type": backend}})
    info = detect(src)
    assert (info.backend, info.network_type) == (backend, network_type)
    if backend == "udp":
        assert info.udp_port == 8285 and info.overlay_port() is None


def test_flannel_without_backend_type_is_udp_as_flannel_defaults():
    src = sources("flannel-vxlan")
    src.configmaps[("kube-flannel", "kube-flannel-cfg")]["data"]["net-conf.json"] = '{"Network": "10.1.0.0/16"}'
    assert detect(src).backend == "udp"


def test_canal_config():
    src = CniSources(configmaps={("kube-system", "canal-config"): {"data": {
        "canal_iface": "", "masquerade": "true",
        "net-conf.json": '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'}}})
    info = detect(src)
    assert (info.cni_plugin, info.backend, info.udp_port, info.vni) == ("flannel", "vxlan", 8472, 1)
    assert "canal" in info.source


def test_k3s_node_annotations_without_configmap():
    info = detect(sources("k3s-flannel"))
    assert (info.cni_plugin, info.backend, info.network_type) == ("flannel", "host-gw", "underlay")
    assert info.pod_network == ("10.42.0.0/23",)    # node podCIDRs collapsed
    assert "k3s" in info.source


def test_flannel_node_annotations_carry_vni():
    nodes = [{"metadata": {"name": "n1", "annotations": {
        "flannel.alpha.coreos.com/backend-type": "vxlan",
        "flannel.alpha.coreos.com/backend-data": '{"VNI":7,"VtepMAC":"aa:bb:cc:dd:ee:ff"}',
        "flannel.alpha.coreos.com/public-ip": "192.168.1.10"}}, "spec": {"podCIDR": "10.244.3.0/24"}}]
    info = detect(CniSources(nodes=nodes))
    assert (info.backend, info.udp_port, info.vni, info.pod_network) == ("vxlan", 8472, 7, ("10.244.3.0/24",))


def test_k3s_flannel_backend_none_is_not_flannel():
    nodes = [{"metadata": {"name": "n1", "annotations": {"k3s.io/node-args": '["server","--flannel-backend=none"]'}}}]
    assert detect(CniSources(nodes=nodes)) == CniInfo()


def test_calico_ipip_manifest():
    info = detect(sources("calico-ipip"))
    assert (info.cni_plugin, info.backend, info.network_type) == ("calico", "ipip", "overlay")
    assert info.udp_port is None and info.overlay_port() is None
    assert info.pod_network == ("192.168.0.0/16",)
    assert "ipipMode Always" in info.source


def test_calico_vxlan_operator_pools_and_felix():
    info = detect(sources("calico-vxlan-operator"))
    assert (info.cni_plugin, info.backend, info.network_type, info.udp_port, info.vni) == \
        ("calico", "vxlan", "overlay", 4789, 4096)
    assert info.overlay_port() == (4789, 4096, "vxlan")
    assert info.pod_network == ("10.48.0.0/16",)


def test_calico_operator_installation_alone():
    src = sources("calico-vxlan-operator")
    src.ippools = []
    src.felix = []
    info = detect(src)
    assert (info.backend, info.udp_port, info.vni) == ("vxlan", 4789, 4096)
    assert "Installation default" in info.source


@pytest.mark.parametrize("encap, backend, network_type", [
    ("IPIPCrossSubnet", "ipip", "overlay"), ("VXLANCrossSubnet", "vxlan", "overlay"), ("None", "bird", "underlay")])
def test_calico_installation_encapsulations(encap, backend, network_type):
    src = sources("calico-vxlan-operator")
    src.ippools = []
    src.installations[0]["spec"]["calicoNetwork"]["ipPools"][0]["encapsulation"] = encap
    src.installations[0]["spec"]["calicoNetwork"]["bgp"] = "Enabled"
    info = detect(src)
    assert (info.backend, info.network_type) == (backend, network_type)


def test_calico_felix_non_default_vxlan():
    src = sources("calico-vxlan-operator")
    src.felix[0]["spec"].update({"vxlanPort": 8472, "vxlanVNI": 5000})
    assert detect(src).overlay_port() == (8472, 5000, "vxlan")


def test_calico_never_never_is_bird_underlay():
    src = sources("calico-ipip")
    src.ippools[0]["spec"]["ipipMode"] = "Never"
    info = detect(src)
    assert (info.backend, info.network_type) == ("bird", "underlay")


def test_calico_crosssubnet_is_overlay():
    src = sources("calico-ipip")
    src.ippools[0]["spec"].update({"ipipMode": "Never", "vxlanMode": "CrossSubnet"})
    info = detect(src)
    assert (info.backend, info.network_type, info.udp_port, info.vni) == ("vxlan", "overlay", 4789, 4096)


def test_disabled_pools_are_ignored():
    src = sources("calico-ipip")
    src.ippools.append({"apiVersion": "crd.projectcalico.org/v1", "metadata": {"name": "old-vxlan"},
                        "spec": {"cidr": "172.16.0.0/16", "vxlanMode": "Always", "disabled": True}})
    assert detect(src).backend == "ipip"


def test_calico_config_only():
    src = CniSources(configmaps={("kube-system", "calico-config"): {"data": {"calico_backend": "vxlan"}}})
    assert detect(src).overlay_port() == (4789, 4096, "vxlan")
    src = CniSources(configmaps={("kube-system", "calico-config"): {"data": {"calico_backend": "bird"}}})
    info = detect(src)
    assert (info.backend, info.network_type) == ("bird", "unknown")   # IPIP or not: cannot tell, do not guess


def test_calico_node_annotations_last_resort():
    nodes = [{"metadata": {"name": "n", "annotations": {"projectcalico.org/IPv4Address": "10.0.0.1/24",
                                                         "projectcalico.org/IPv4VXLANTunnelAddr": "10.1.0.1"}}}]
    assert detect(CniSources(nodes=nodes)).backend == "vxlan"


def test_unknown_cni_is_never_guessed():
    info = detect(sources("unknown-cni"))
    assert info == CniInfo()
    assert info.row() == {"cni-plugin": "unknown", "network-type": "unknown", "pod-network": [],
                          "source": "no Flannel or Calico configuration found"}


def test_malformed_net_conf_is_ignored():
    src = CniSources(configmaps={("kube-flannel", "kube-flannel-cfg"): {"data": {"net-conf.json": "{not json"}}})
    assert detect(src).cni_plugin == "unknown"


def test_migration_leftover_flannel_configmap_loses_to_calico_nodes():
    src = sources("calico-ipip")
    src.configmaps.update(sources("flannel-vxlan").configmaps)
    assert detect(src).cni_plugin == "calico"
