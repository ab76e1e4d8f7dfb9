"""Issue 13, NETCONF items (10-17) and the cross-face ones, against real agent processes.

ncclient is the client for every item; the running lock and NACM are also
driven from gNMI (pygnmi) and the CLI over SSH (asyncssh), because the point
of both is that every face gets the same answer.
"""
from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest
from lxml import etree
from ncclient.operations import RPCError
from pygnmi.client import gNMIclient, gNMIException

from tests.agentproc import USERS, AgentProcess, free_port

from .helpers import K8S, NSMAP, connect, connection_xml, running_names

YANGLIB = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
NETMOD = "urn:ietf:params:xml:ns:netmod:notification"
NACM = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"


# -- 10: XPath filters as Ansible sends them ----------------------------------------------------------
def test_xpath_filter_without_namespaces_and_with_module_prefixes(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("xp", kube_config="/k/xp"))
        for select in ("/k8s/connection", "/k8s/connection[cluster-name='xp']/kube-config",
                       "/kubefabric-k8s:k8s/kubefabric-k8s:connection", "//connection[cluster-name='xp']"):
            data = m.get_config("running", filter=("xpath", select)).data_ele
            assert data.findtext(".//k8s:connection/k8s:cluster-name", namespaces=NSMAP) == "xp", select
        # a name no module defines cannot match: an rpc-error naming it, not an empty <data/>
        for select in ("/k8s/conection", "/nosuchmodule:k8s"):
            with pytest.raises(RPCError) as err:
                m.get(filter=("xpath", select))
            assert err.value.tag == "invalid-value" and select.split("/")[-1].split(":")[0] in err.value.message
        # a prefix declared on <filter> still means its namespace (RFC 6241 8.9)
        flt = etree.fromstring(f'<filter xmlns:x="{K8S}" type="xpath" select="/x:k8s/x:connection/x:cluster-name"/>')
        assert m.get_config("running", filter=flt).data_ele.findtext(".//k8s:cluster-name", namespaces=NSMAP) == "xp"


# -- 11: the YANG library and get-schema -----------------------------------------------------------------
def test_yang_library_lists_every_module_and_get_schema_serves_them(port):
    with connect(port) as m:
        caps = list(m.server_capabilities)
        lib = m.get(filter=("subtree", f'<yang-library xmlns="{YANGLIB}"/>')).data_ele
        content_id = lib.findtext(f".//{{{YANGLIB}}}content-id")
        assert f"urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04&content-id={content_id}" in caps
        modules = {e.findtext(f"{{{YANGLIB}}}name"): e.findtext(f"{{{YANGLIB}}}revision")
                   for e in lib.iterfind(f".//{{{YANGLIB}}}module")}
        imports = {e.findtext(f"{{{YANGLIB}}}name") for e in lib.iterfind(f".//{{{YANGLIB}}}import-only-module")}
        for name in ("kubefabric-k8s", "kubefabric-vport", "kubefabric-notifications", "ietf-netconf",
                     "ietf-netconf-with-defaults", "ietf-netconf-monitoring", "ietf-netconf-notifications",
                     "ietf-netconf-acm", "ietf-yang-library"):
            assert name in modules, name
        assert {"ietf-inet-types", "ietf-yang-types", "ietf-datastores"} <= imports
        datastores = {e.text for e in lib.iterfind(f".//{{{YANGLIB}}}datastore/{{{YANGLIB}}}name")}
        assert datastores == {"ds:running", "ds:candidate", "ds:startup"}
        for name, revision in list(modules.items()) + [(n, None) for n in imports]:
            text = m.get_schema(name, revision).data
            assert f"module {name}" in text, name


# -- 12: RFC 5277 streams --------------------------------------------------------------------------------
def test_streams_announce_replay_only_where_it_works(port):
    with connect(port) as m:
        streams = m.get(filter=("subtree", f'<netconf xmlns="{NETMOD}"/>')).data_ele
        table = {s.findtext(f"{{{NETMOD}}}name"): s for s in streams.iterfind(f".//{{{NETMOD}}}stream")}
        for name in ("vport", "kubernetes"):  # the time machine keeps these: replay works
            assert table[name].findtext(f"{{{NETMOD}}}replaySupport") == "true"
            created = table[name].findtext(f"{{{NETMOD}}}replayLogCreationTime")
            assert created and created.endswith("Z"), name
        for name in ("NETCONF", "config", "connection"):
            assert table[name].findtext(f"{{{NETMOD}}}replaySupport") == "false"
            assert table[name].find(f"{{{NETMOD}}}replayLogCreationTime") is None
        with pytest.raises(RPCError) as err:  # what is announced is what is served
            m.create_subscription(stream_name="connection", start_time="2026-01-01T00:00:00Z")
        assert err.value.tag == "operation-failed"


# -- 15: edit-config ---------------------------------------------------------------------------------------
def test_operation_attribute_outside_the_netconf_namespace_is_refused(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("attr"))
        for attr in ('operation="delete"', 'xmlns:x="urn:example" x:operation="delete"'):
            bad = (f'<config><k8s xmlns="{K8S}"><connection {attr}><cluster-name>attr</cluster-name>'
                   "</connection></k8s></config>")
            with pytest.raises(RPCError) as err:
                m.edit_config(target="running", config=bad)
            assert err.value.tag == "unknown-attribute" and "operation" in err.value.message
        assert running_names(m) == ["attr"]  # nothing happened


def test_candidate_built_in_several_edits_is_validated_as_a_whole(port):
    with connect(port) as m:
        # a connection without its mandatory kube-config: invalid on its own, fine as a step
        m.edit_config(target="candidate", config=connection_xml("multi", kube_config=""))
        with pytest.raises(RPCError) as err:
            m.validate(source="candidate")
        assert err.value.tag == "data-missing"
        with pytest.raises(RPCError):
            m.commit()
        assert running_names(m) == []
        m.edit_config(target="candidate", config=connection_xml("multi", kube_config="/k/multi"))
        m.validate(source="candidate")
        m.commit()
        assert running_names(m) == ["multi"]


# -- agents for the restart, startup, NACM and lock items ----------------------------------------------------
@pytest.fixture
def full_agent(tmp_path):
    """An agent with gNMI, NETCONF and the CLI over SSH (every face that writes)."""
    nc, cli = free_port(), free_port()
    proc = AgentProcess(tmp_path, extra_args=["--netconf-addr", f"127.0.0.1:{nc}", "--cli-ssh-addr", f"127.0.0.1:{cli}"])
    proc.netconf_port, proc.cli_port = nc, cli
    proc.start()
    yield proc
    proc.kill()


def _cli(agent, command: str, user: str = "admin") -> asyncssh.SSHCompletedProcess:
    async def run():
        async with asyncssh.connect("127.0.0.1", agent.cli_port, username=user, password=USERS[user][0],
                                    known_hosts=None) as conn:
            return await conn.run(command)
    return asyncio.run(run())


def _gnmi_names(agent) -> list[str]:
    with gNMIclient(**agent.gnmi_kwargs("admin")) as gc:
        got = gc.get(path=["/k8s/connection"], encoding="json_ietf", datatype="config")
    names = []
    for n in got["notification"]:
        for u in n.get("update") or []:
            val = u["val"]
            entries = val if isinstance(val, list) else [val]
            for e in entries:
                if isinstance(e, dict):
                    plain = {k.rpartition(":")[2]: v for k, v in e.items()}
                    names += [plain["cluster-name"]] if plain.get("cluster-name") else []
    return sorted(set(names))


# -- 13: a confirmed commit does not survive a crash ------------------------------------------------------
def test_agent_killed_before_the_confirm_restores_the_previous_config(full_agent):
    with connect(full_agent.netconf_port) as m:
        m.edit_config(target="running", config=connection_xml("keep"))
        m.copy_config(source="running", target="startup")  # :startup loads running at boot (item 14)
        m.edit_config(target="candidate", config=connection_xml("pending"))
        m.commit(confirmed=True, timeout="600")
        assert running_names(m) == ["keep", "pending"]
    assert (full_agent.data_dir / "confirmed-commit.json").exists()
    full_agent.kill()  # SIGKILL: no shutdown handler runs
    full_agent.start()
    assert "rolled back" in full_agent.log()
    with connect(full_agent.netconf_port) as m:
        assert running_names(m) == ["keep"]
    assert not (full_agent.data_dir / "confirmed-commit.json").exists()


# -- 14: :startup -----------------------------------------------------------------------------------------
def test_running_is_loaded_from_startup_at_boot(full_agent):
    with connect(full_agent.netconf_port) as m:
        m.edit_config(target="running", config=connection_xml("saved"))
        m.copy_config(source="running", target="startup")
        m.edit_config(target="running", config=connection_xml("unsaved"))
        assert running_names(m) == ["saved", "unsaved"]
    full_agent.stop()
    full_agent.start()
    with connect(full_agent.netconf_port) as m:
        assert running_names(m) == ["saved"]  # RFC 6241 8.7: running is loaded from startup
        assert running_names(m, "startup") == ["saved"]


# -- 16: NACM, the same decisions on every face ----------------------------------------------------------------
def _nacm_rules(deny_path: str) -> str:
    return f"""<config><nacm xmlns="{NACM}"><rule-list><name>protect-prod</name><group>network-admin</group>
      <rule><name>no-prod</name><module-name>kubefabric-k8s</module-name>
        <path xmlns:k="{K8S}">{deny_path}</path>
        <access-operations>create update delete read</access-operations><action>deny</action></rule>
    </rule-list></nacm></config>"""


def test_nacm_rule_denies_the_same_write_and_read_on_netconf_gnmi_and_the_cli(full_agent):
    with connect(full_agent.netconf_port) as m:
        m.edit_config(target="running", config=connection_xml("prod"))
        m.edit_config(target="running", config=connection_xml("dev"))
        m.edit_config(target="running", config=_nacm_rules("/k:k8s/k:connection[k:cluster-name='prod']"))
        # NETCONF: writing and reading the protected entry is denied; the others are not
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("prod", kube_config="/k/new"))
        assert err.value.tag == "access-denied"
        m.edit_config(target="running", config=connection_xml("dev", kube_config="/k/new"))
        assert running_names(m) == ["dev"]  # prod is there, but not for this user
    # gNMI: the same
    with gNMIclient(**full_agent.gnmi_kwargs("admin")) as gc:
        with pytest.raises(gNMIException) as err:
            gc.set(update=[("/k8s/connection[cluster-name=prod]/kube-config", "/k/gnmi")], encoding="json_ietf")
        assert "PERMISSION_DENIED" in str(err.value) or "access-denied" in str(err.value)
        gc.set(update=[("/k8s/connection[cluster-name=dev]/kube-config", "/k/gnmi")], encoding="json_ietf")
    assert _gnmi_names(full_agent) == ["dev"]
    # the CLI over SSH: the same
    out = _cli(full_agent, "k8s-connection-modify cluster-name prod kube-config /k/cli")
    assert out.exit_status == 1 and "permission denied" in out.stderr and "prod" in out.stderr
    assert _cli(full_agent, "k8s-connection-modify cluster-name dev kube-config /k/cli").exit_status == 0
    shown = _cli(full_agent, "k8s-connection-show format cluster-name no-show-headers").stdout.split()
    assert shown == ["dev"]
    # the read-only role is a default group: denied on every face
    with connect(full_agent.netconf_port, user="viewer") as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("x"))
        assert err.value.tag == "access-denied"
    with gNMIclient(**full_agent.gnmi_kwargs("viewer")) as gc:
        with pytest.raises(gNMIException):
            gc.set(update=[("/k8s/connection[cluster-name=x]", {"kube-config": "/k/x"})], encoding="json_ietf")
    assert _cli(full_agent, "k8s-connection-create cluster-name x kube-config /k/x", user="viewer").exit_status == 1
    # counters (RFC 8341 3.1.2)
    with connect(full_agent.netconf_port) as m:
        nacm = m.get(filter=("subtree", f'<nacm xmlns="{NACM}"/>')).data_ele
        assert int(nacm.findtext(f".//{{{NACM}}}denied-data-writes")) >= 3
        assert int(nacm.findtext(f".//{{{NACM}}}denied-operations")) >= 3


# -- 17: locks mean something ----------------------------------------------------------------------------------
def test_running_lock_refuses_gnmi_and_cli_writes_naming_the_holder(full_agent):
    with connect(full_agent.netconf_port) as holder:
        holder.lock("running")
        sid = holder.session_id
        with gNMIclient(**full_agent.gnmi_kwargs("admin")) as gc:
            with pytest.raises(gNMIException) as err:
                gc.set(update=[("/k8s/connection[cluster-name=g]", {"kube-config": "/k/g"})], encoding="json_ietf")
            assert f"NETCONF session {sid}" in str(err.value)
        out = _cli(full_agent, "k8s-connection-create cluster-name c kube-config /k/c")
        assert out.exit_status == 1 and f"NETCONF session {sid}" in out.stderr
        with connect(full_agent.netconf_port) as other:
            with pytest.raises(RPCError) as err:
                other.edit_config(target="running", config=connection_xml("n"))
            assert err.value.tag == "in-use"
        holder.edit_config(target="running", config=connection_xml("mine"))  # the holder writes
        holder.unlock("running")
    with gNMIclient(**full_agent.gnmi_kwargs("admin")) as gc:
        gc.set(update=[("/k8s/connection[cluster-name=g]", {"kube-config": "/k/g"})], encoding="json_ietf")
    assert _gnmi_names(full_agent) == ["g", "mine"]
    # a lock dies with its session
    with connect(full_agent.netconf_port) as holder:
        holder.lock("running")
    deadline = time.monotonic() + 10
    while _cli(full_agent, "k8s-connection-create cluster-name after kube-config /k/a").exit_status != 0:
        assert time.monotonic() < deadline, "the lock outlived its session"
        time.sleep(0.2)


def test_ansible_confirmed_commit_and_filters(port, nc_agent, tmp_path):
    """examples/ansible/confirmed.yml: netconf_config confirm / confirm_commit, netconf_get xpath and subtree."""
    pytest.importorskip("ansible_collections.ansible.netcommon", reason="the ansible package is in the test extra")
    from .test_examples import _playbooks

    result = _playbooks(["confirmed.yml"], port, tmp_path)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert "All assertions passed" in result.stdout
    log = nc_agent.log()
    assert "rolled back in 120" in log and "confirmed" in log.split("rolled back in 120", 1)[1]
    with connect(port) as m:
        assert running_names(m) == ["confirmed"]
    time.sleep(3)
    with connect(port) as m:  # confirmed: the end of Ansible's session rolled nothing back
        assert running_names(m) == ["confirmed"]

