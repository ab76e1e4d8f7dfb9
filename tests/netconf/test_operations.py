"""Every RFC 6241 operation with ncclient against a real agent process."""
from __future__ import annotations

import time

import pytest
from lxml import etree
from ncclient.operations import RPCError
from ncclient.operations.retrieve import WithDefaultsError

from .helpers import CONN, FABRIC, K8S, NC, NSMAP, connect, connection_names, connection_xml, running_names

MONITORING = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"


def test_hello_capabilities(port):
    with connect(port) as m:
        caps = set(m.server_capabilities)
        assert m.session_id and int(m.session_id) > 0
    for urn in (
        "urn:ietf:params:netconf:base:1.0",
        "urn:ietf:params:netconf:base:1.1",
        "urn:ietf:params:netconf:capability:candidate:1.0",
        "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
        "urn:ietf:params:netconf:capability:validate:1.1",
        "urn:ietf:params:netconf:capability:startup:1.0",
        "urn:ietf:params:netconf:capability:writable-running:1.0",
        "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
        "urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&also-supported=report-all,trim",
        "urn:ietf:params:netconf:capability:xpath:1.0",
        "urn:ietf:params:netconf:capability:notification:1.0",
        "urn:ietf:params:netconf:capability:interleave:1.0",
        f"{MONITORING}?module=ietf-netconf-monitoring&revision=2010-10-04",
    ):
        assert urn in caps, urn
    # YANG 1.1 modules are announced by the YANG library, not the hello (RFC 7950 5.6.4; see test_yang_library)
    assert not any("module=kubefabric-" in c for c in caps)
    assert any(c.startswith("urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id=")
               for c in caps)


def test_edit_config_merge_create_replace_delete_remove(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("alpha"))
        assert running_names(m) == ["alpha"]
        # merge changes one leaf, keeps the rest
        m.edit_config(target="running", config=connection_xml("alpha", kube_config="", create_vport=True))
        data = m.get_config("running").data
        assert data.findtext(".//k8s:connection/k8s:create-vport", namespaces=NSMAP) == "true"
        assert data.findtext(".//k8s:connection/k8s:kube-config", namespaces=NSMAP) == "/etc/kubefabric/k.conf"
        # create on an existing entry -> data-exists, nothing changes
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("alpha", op="create"))
        assert err.value.tag == "data-exists"
        m.edit_config(target="running", config=connection_xml("beta", op="create"))
        assert running_names(m) == ["alpha", "beta"]
        # replace drops leaves not given
        m.edit_config(target="running", config=connection_xml("alpha", kube_config="/k2", op="replace"))
        data = m.get_config("running").data
        entry = data.find(".//k8s:connection[k8s:cluster-name='alpha']", NSMAP)
        assert entry.findtext("k8s:kube-config", namespaces=NSMAP) == "/k2"
        assert entry.find("k8s:create-vport", NSMAP) is None
        # delete of a missing entry -> data-missing; remove is silent
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("nope", kube_config="", op="delete"))
        assert err.value.tag == "data-missing"
        m.edit_config(target="running", config=connection_xml("nope", kube_config="", op="remove"))
        m.edit_config(target="running", config=connection_xml("beta", kube_config="", op="delete"))
        assert running_names(m) == ["alpha"]


def test_default_operation_none_and_replace(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("a1"))
        m.edit_config(target="running", config=connection_xml("a2"))
        # none: only explicit operations act
        m.edit_config(target="running", default_operation="none",
                      config=connection_xml("a1", kube_config="/changed", op=None).replace(
                          "<connection>", f'<connection xmlns:nc="{NC}" nc:operation="delete">'))
        assert running_names(m) == ["a2"]
        with pytest.raises(RPCError) as err:  # none through a node that does not exist: data-missing
            m.edit_config(target="running", default_operation="none", config=connection_xml("a9", kube_config="/x"))
        assert err.value.tag == "data-missing"
        m.edit_config(target="running", default_operation="none",  # ... unless an operation below creates it
                      config=connection_xml("a9").replace("<connection>", f'<connection xmlns:nc="{NC}" nc:operation="create">'))
        assert running_names(m) == ["a2", "a9"]
        # replace: the config given becomes the whole datastore
        m.edit_config(target="running", default_operation="replace", config=connection_xml("a3"))
        assert running_names(m) == ["a3"]


def test_test_option_test_only_changes_nothing(port):
    with connect(port) as m:
        m.edit_config(target="running", test_option="test-only", config=connection_xml("tt"))
        assert running_names(m) == []
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", test_option="test-only", config=connection_xml("tt", kube_config="rel"))
        assert err.value.tag == "invalid-value"


def test_error_option_continue_and_rollback(port):
    with connect(port) as m:
        bad_and_good = (f'<config><k8s xmlns="{K8S}" xmlns:nc="{NC}">'
                        '<connection nc:operation="delete"><cluster-name>missing</cluster-name></connection>'
                        "<connection><cluster-name>good</cluster-name><kube-config>/k</kube-config></connection>"
                        "</k8s></config>")
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", error_option="rollback-on-error", config=bad_and_good)
        assert err.value.tag == "data-missing"
        assert running_names(m) == []
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", error_option="continue-on-error", config=bad_and_good)
        assert err.value.tag == "data-missing"
        assert running_names(m) == ["good"]  # the good part was applied


def test_get_config_subtree_and_xpath_filters(port):
    with connect(port) as m:
        for name in ("f1", "f2"):
            m.edit_config(target="running", config=connection_xml(name, create_vport=(name == "f2")))
        m.edit_config(target="running", config=f'<config><connection-stats-settings xmlns="{CONN}">'
                      "<enable>true</enable></connection-stats-settings></config>")
        # selection node: one top container only
        data = m.get_config("running", filter=("subtree", f'<k8s xmlns="{K8S}"/>')).data
        assert data.find(f"{{{CONN}}}connection-stats-settings") is None
        assert connection_names(data) == ["f1", "f2"]
        # content match on the key: one entry, whole
        flt = f'<k8s xmlns="{K8S}"><connection><cluster-name>f2</cluster-name></connection></k8s>'
        data = m.get_config("running", filter=("subtree", flt)).data
        assert connection_names(data) == ["f2"]
        assert data.findtext(".//k8s:create-vport", namespaces=NSMAP) == "true"
        # selection of one leaf in every entry: keys are kept
        flt = f'<k8s xmlns="{K8S}"><connection><kube-config/></connection></k8s>'
        data = m.get_config("running", filter=("subtree", flt)).data
        entries = data.findall(".//k8s:connection", NSMAP)
        assert [len(e) for e in entries] == [2, 2]
        # content match on a non-key leaf
        flt = f'<k8s xmlns="{K8S}"><connection><create-vport>true</create-vport></connection></k8s>'
        assert connection_names(m.get_config("running", filter=("subtree", flt)).data) == ["f2"]
        # xpath
        data = m.get_config("running", filter=("xpath", ({"k": K8S}, "/k:k8s/k:connection[k:cluster-name='f1']"))).data
        assert connection_names(data) == ["f1"]
        data = m.get_config("running", filter=("xpath", ({"k": K8S}, "//k:kube-config"))).data
        assert len(data.findall(".//k8s:kube-config", NSMAP)) == 2
        assert data.find(f"{{{CONN}}}connection-stats-settings") is None
        m.edit_config(target="running", config=f'<config><connection-stats-settings xmlns="{CONN}" xmlns:nc="{NC}" '
                      'nc:operation="remove"/></config>')


def test_get_returns_config_and_state(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("g1"))
        data = m.get().data
        assert connection_names(data) == ["g1"]
        assert data.findtext(f".//{{{FABRIC}}}fabric/{{{FABRIC}}}sync-state") == "in-sync"
        assert data.findtext(f".//{{{FABRIC}}}node/{{{FABRIC}}}name") == "leaf1"
        assert data.find(f"{{{MONITORING}}}netconf-state") is not None
        # filtered get: state only where asked
        data = m.get(filter=("subtree", f'<fabric xmlns="{FABRIC}"><node/></fabric>')).data
        assert [etree.QName(c).localname for c in data] == ["fabric"]
        assert data.find(f".//{{{FABRIC}}}sync-state") is None


def test_with_defaults_modes(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("wd", enable=True))
        flt = ("subtree", f'<k8s xmlns="{K8S}"/>')
        explicit = m.get_config("running", filter=flt).data
        assert explicit.findtext(".//k8s:enable", namespaces=NSMAP) == "true"  # set by the client: reported
        assert explicit.find(".//k8s:create-vport", NSMAP) is None
        full = m.get_config("running", filter=flt, with_defaults="report-all").data
        assert full.findtext(".//k8s:create-vport", namespaces=NSMAP) == "false"
        trim = m.get_config("running", filter=flt, with_defaults="trim").data
        assert trim.find(".//k8s:enable", NSMAP) is None and trim.find(".//k8s:create-vport", NSMAP) is None
        # ncclient reads the capability's also-supported list and refuses an unsupported mode itself
        with pytest.raises(WithDefaultsError):
            m.get_config("running", with_defaults="report-all-tagged")


def test_startup_copy_and_delete(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("s1"))
        m.copy_config(source="running", target="startup")
        assert running_names(m, "startup") == ["s1"]
        m.edit_config(target="running", config=connection_xml("s1", kube_config="", op="delete"))
        assert running_names(m) == []
        m.copy_config(source="startup", target="running")
        assert running_names(m) == ["s1"]
        m.delete_config(target="startup")
        assert running_names(m, "startup") == []
        with pytest.raises(RPCError) as err:
            m.delete_config(target="running")
        assert err.value.tag == "operation-not-supported"
        # copy-config with inline config to candidate
        m.copy_config(source=f"<source>{connection_xml('inline')}</source>", target="candidate")
        assert running_names(m, "candidate") == ["inline"]
        m.discard_changes()


def test_validate(port):
    with connect(port) as m:
        m.validate(source="running")
        m.validate(source=etree.fromstring(connection_xml("v1")))
        with pytest.raises(RPCError) as err:
            m.validate(source=etree.fromstring(connection_xml("v1", kube_config="")))
        assert err.value.tag == "data-missing"
        m.edit_config(target="candidate", test_option="set", config=connection_xml("v2", kube_config="relative"))
        with pytest.raises(RPCError) as err:
            m.validate(source="candidate")
        assert err.value.tag == "invalid-value"
        assert "kube-config" in (err.value.path or "")
        m.discard_changes()


def test_read_only_user_is_denied_every_write(port):
    with connect(port, user="viewer") as m:
        m.get_config("running")
        m.get()
        for call in (
            lambda: m.edit_config(target="running", config=connection_xml("ro")),
            lambda: m.edit_config(target="candidate", config=connection_xml("ro")),
            lambda: m.copy_config(source="running", target="startup"),
            lambda: m.delete_config(target="startup"),
            lambda: m.commit(),
            lambda: m.discard_changes(),
            lambda: m.lock("running"),
            lambda: m.cancel_commit(),
        ):
            with pytest.raises(RPCError) as err:
                call()
            assert err.value.tag == "access-denied"
    with connect(port) as m:
        assert running_names(m) == []


def test_monitoring_and_get_schema(port):
    with connect(port) as m, connect(port) as other:
        state = m.get(filter=("subtree", f'<netconf-state xmlns="{MONITORING}"/>')).data
        ids = [e.text for e in state.iterfind(f".//{{{MONITORING}}}session/{{{MONITORING}}}session-id")]
        assert m.session_id in ids and other.session_id in ids
        schemas = [e.text for e in state.iterfind(f".//{{{MONITORING}}}schema/{{{MONITORING}}}identifier")]
        assert {"kubefabric-k8s", "kubefabric-vport", "ietf-netconf-monitoring", "kubefabric-notifications"} <= set(schemas)
        assert "notification state-change" in m.get_schema("kubefabric-notifications").data
        reply = m.get_schema("kubefabric-k8s", version="2026-11-22", format="yang")
        assert reply.data.startswith("module kubefabric-k8s {")
        assert "max-elements 4" in reply.data
        with pytest.raises(RPCError) as err:
            m.get_schema("no-such-module")
        assert err.value.tag == "invalid-value"


def test_close_and_kill_session(port):
    victim = connect(port)
    with connect(port) as m:
        victim.lock("running")
        with pytest.raises(RPCError) as err:
            m.lock("running")
        assert err.value.tag == "lock-denied"
        assert err.value.info and victim.session_id in err.value.info
        with pytest.raises(RPCError):
            m.kill_session(m.session_id)
        m.kill_session(victim.session_id)
        m.lock("running")  # released by the kill
        m.unlock("running")
    m = connect(port)
    m.close_session()
    for _ in range(50):
        if not m.connected and not victim.connected:
            break
        time.sleep(0.05)
    assert not m.connected and not victim.connected
