"""Bad input gets a clear rpc-error and changes nothing (RFC 6241 Appendix A, RFC 6242)."""
from __future__ import annotations

import asyncio

import pytest
from ncclient.operations import RPCError

from .helpers import CONN, K8S, NC, RawClient, connect, connection_xml, error_fields, running_names


def _edit(body: str) -> str:
    return (f"<edit-config><target><running/></target><config>{body}</config></edit-config>")


def test_unknown_element(port):
    with connect(port) as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=f'<config><k8s xmlns="{K8S}"><connection><cluster-name>u</cluster-name>'
                          "<kube-config>/k</kube-config><bogus>1</bogus></connection></k8s></config>")
        e = err.value
        assert e.tag == "unknown-element" and e.info and "bogus" in e.info
        assert e.path.endswith("kfk8s:bogus")
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=f'<config><nothing xmlns="{K8S}"/></config>')
        assert err.value.tag == "unknown-element"
        assert running_names(m) == []


def test_wrong_namespace(port):
    with connect(port) as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config='<config><k8s xmlns="urn:example:wrong"><connection>'
                          "<cluster-name>w</cluster-name></connection></k8s></config>")
        assert err.value.tag == "unknown-namespace"
        # a known namespace in the wrong place
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=f'<config><k8s xmlns="{K8S}"><connection xmlns="{CONN}">'
                          "<cluster-name>w</cluster-name></connection></k8s></config>")
        assert err.value.tag == "unknown-element"
        assert running_names(m) == []


def test_invalid_values(port):
    with connect(port) as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("iv", create_vport="maybe"))
        assert err.value.tag == "invalid-value" and "create-vport" in err.value.path
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("bad name!"))
        assert err.value.tag == "invalid-value"
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=f'<config><connection-stats-settings xmlns="{CONN}">'
                          "<max-connections>0</max-connections></connection-stats-settings></config>")
        e = err.value
        assert e.tag == "invalid-value" and e.path == "/kfconn:connection-stats-settings/kfconn:max-connections"
        with pytest.raises(RPCError) as err:  # state data is not config
            m.edit_config(target="running", config=f'<config><k8s xmlns="{K8S}"><cni><cluster-name>x</cluster-name>'
                          "</cni></k8s></config>")
        assert err.value.tag == "invalid-value"
        assert running_names(m) == []


def test_missing_key_and_mandatory_leaf(port):
    with connect(port) as m:
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=f'<config><k8s xmlns="{K8S}"><connection>'
                          "<kube-config>/k</kube-config></connection></k8s></config>")
        assert err.value.tag == "missing-element" and "cluster-name" in err.value.info
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("nokc", kube_config=""))
        e = err.value
        assert e.tag == "data-missing" and e.xml.findtext("{*}error-app-tag") == "missing-element"
        assert running_names(m) == []


def test_fifth_connection_and_second_overlay_are_refused(port):
    with connect(port) as m:
        for i in range(4):
            m.edit_config(target="running", config=connection_xml(f"k{i}", overlay_vxlan_analytics=(i == 0)))
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("k4"))
        e = err.value
        assert (e.type, e.tag, e.severity) == ("application", "operation-failed", "error")
        assert e.xml.findtext("{*}error-app-tag") == "too-many-elements"
        assert e.path == "/kfk8s:k8s/kfk8s:connection"
        assert "four" in e.message
        with pytest.raises(RPCError) as err:
            m.edit_config(target="running", config=connection_xml("k1", kube_config="", overlay_vxlan_analytics=True))
        e = err.value
        assert e.tag == "operation-failed" and e.xml.findtext("{*}error-app-tag") == "must-violation"
        assert "overlay-vxlan-analytics" in e.path and "At most one" in e.message
        assert running_names(m) == ["k0", "k1", "k2", "k3"]


async def test_xml_bomb_and_external_entity_are_refused(port):
    client = await RawClient(port).open()
    bomb = ('<?xml version="1.0"?><!DOCTYPE rpc [<!ENTITY a "aaaaaaaaaa">'
            + "".join(f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8))
            + f']><rpc xmlns="{NC}" message-id="1"><get-config><source><running/></source>'
            f"<filter><k8s xmlns=\"{K8S}\">&i;</k8s></filter></get-config></rpc>")
    client.send(bomb)
    reply = await client.recv()
    f = error_fields(reply)
    assert f["error-tag"] == "malformed-message" and f["error-type"] == "rpc"
    assert "DTD" in f["error-message"]
    xxe = (f'<?xml version="1.0"?><!DOCTYPE rpc [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           f'<rpc xmlns="{NC}" message-id="2"><get/></rpc>')
    client.send(xxe)
    assert error_fields(await client.recv())["error-tag"] == "malformed-message"
    # the session goes on
    reply = await client.rpc("<get-config><source><running/></source></get-config>", "3")
    assert reply.get("message-id") == "3" and reply.find(f"{{{NC}}}data") is not None
    await client.close()


async def test_malformed_xml_and_missing_message_id(port):
    client = await RawClient(port).open()
    client.send(f'<rpc xmlns="{NC}" message-id="1"><get-config><source><running/></get-config></rpc>')
    assert error_fields(await client.recv())["error-tag"] == "malformed-message"
    client.send(f'<rpc xmlns="{NC}"><get/></rpc>')
    f = error_fields(await client.recv())
    assert f["error-tag"] == "missing-attribute" and f["info:bad-attribute"] == "message-id"
    reply = await client.rpc(f'<frobnicate xmlns="{NC}"/>', "9")
    assert reply.get("message-id") == "9" and error_fields(reply)["error-tag"] == "operation-not-supported"
    deep = "<a>" * 200 + "</a>" * 200
    reply = await client.rpc(f'<get-config><source><running/></source><filter>{deep}</filter></get-config>', "10")
    assert error_fields(reply)["error-tag"] == "malformed-message"
    reply = await client.rpc("<get/>", "11")
    assert reply.find(f"{{{NC}}}data") is not None
    await client.close()


async def test_malformed_on_base10_session_uses_operation_failed(port):
    client = await RawClient(port).open(base11=False)
    client.send("<rpc not closed")
    assert error_fields(await client.recv())["error-tag"] == "operation-failed"
    reply = await client.rpc("<get-config><source><running/></source></get-config>", "2")
    assert reply.get("message-id") == "2"
    await client.close()


async def test_huge_message_is_refused_and_the_session_survives(port):
    client = await RawClient(port).open()
    padding = "x" * (17 * 1024 * 1024)
    client.send(f'<rpc xmlns="{NC}" message-id="1"><get><filter><k8s xmlns="{K8S}">{padding}</k8s></filter></get></rpc>')
    f = error_fields(await client.recv(timeout=30))
    assert f["error-tag"] == "malformed-message" and "limit" in f["error-message"]
    reply = await client.rpc("<get-config><source><running/></source></get-config>", "2")
    assert reply.get("message-id") == "2"
    await client.close()


async def test_broken_chunk_framing_ends_the_session(port):
    client = await RawClient(port).open()
    client.send_raw(b"\n#abc\n<rpc/>\n##\n")
    f = error_fields(await client.recv())
    assert f["error-tag"] == "malformed-message"
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()


async def test_client_hello_with_session_id_is_refused(port):
    import asyncssh
    from tests.agentproc import USERS
    from agent.netconf.framing import encode

    conn = await asyncssh.connect("127.0.0.1", port, username="admin", password=USERS["admin"][0], known_hosts=None)
    writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
    await reader.readuntil(b"]]>]]>")
    writer.write(encode(f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability>'
                      "</capabilities><session-id>4</session-id></hello>".encode(), False))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a reply
    conn.close()


async def test_wrong_password_and_unknown_user(port):
    import asyncssh

    for user, pw in (("admin", "wrong"), ("nobody", "x")):
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", port, username=user, password=pw, known_hosts=None)
