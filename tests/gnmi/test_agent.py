"""gNMI against a real `kubefabric run` process, with pygnmi as the client.

Config behaviours (Get/Set/Subscribe of k8s connections), auth, TLS,
restarts and port conflicts.  Every refused request is followed by a Get
showing the datastore did not change.
"""
from __future__ import annotations

import datetime
import ipaddress
import json

import grpc
import pytest
from pygnmi.client import gNMIclient, gNMIException
from agent.gnmi_proto import gnmi_pb2, gnmi_pb2_grpc

from agent.gnmi.paths import parse
from tests.agentproc import USERS, AgentProcess
from tests.gnmi.helpers import plain

K8S = "/kubefabric-k8s:k8s/connection"


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    proc = AgentProcess(tmp_path_factory.mktemp("gnmi-agent")).start()
    yield proc
    proc.stop()


@pytest.fixture
def gc(agent):
    """pygnmi client as network-admin; the k8s config is emptied after each test."""
    with gNMIclient(**agent.gnmi_kwargs("admin")) as client:
        yield client
        client.set(delete=["/k8s"], encoding="json_ietf")


@pytest.fixture
def raw(agent):
    """Raw gNMI stub (for requests pygnmi cannot build) and admin metadata."""
    channel = grpc.insecure_channel(agent.gnmi_addr)
    yield gnmi_pb2_grpc.gNMIStub(channel), [("username", "admin"), ("password", USERS["admin"][0])]
    channel.close()


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(gNMIException) as info:
        call(*args, **kwargs)
    return info.value.orig_exc.code()


def details_of(call, *args, **kwargs) -> str:
    with pytest.raises(gNMIException) as info:
        call(*args, **kwargs)
    return info.value.orig_exc.details()


def conn(name: str, **extra) -> dict:
    return {"cluster-name": name, "kube-config": f"/etc/kubefabric/{name}.kubeconfig", **extra}


def connections(client) -> dict:
    """cluster-name -> config of every k8s connection, via Get."""
    resp = client.get(path=["/k8s/connection"], encoding="json_ietf", datatype="config")
    out = {}
    for u in resp["notification"][0].get("update", []):
        val = plain(u["val"])
        out[val["cluster-name"]] = val
    return out


def test_capabilities(gc):
    caps = gc.capabilities()
    assert caps["gnmi_version"] == "0.10.0"
    assert set(caps["supported_encodings"]) == {"json", "json_ietf", "proto"}
    models = {m["name"]: m for m in caps["supported_models"]}
    assert models["kubefabric-k8s"] == {"name": "kubefabric-k8s", "organization": "kubefabric project", "version": "2026-11-22"}
    assert {"kubefabric-vport", "kubefabric-sflow", "kubefabric-connection", "kubefabric-fabric"} <= set(models)


def test_set_then_get_in_every_path_form(gc):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a")),
                   ("kubefabric-k8s:k8s/connection[cluster-name=b]", conn("b", **{"create-vport": True}))],
           encoding="json_ietf")
    assert set(connections(gc)) == {"a", "b"}
    for path in ["kubefabric-k8s:k8s/connection", "/k8s/connection[cluster-name=*]", "/kubefabric-k8s:k8s/connection",
                 "/k8s/*", "/k8s/..."]:
        resp = gc.get(path=[path], encoding="json_ietf", datatype="config")
        text = json.dumps(resp)
        assert "/etc/kubefabric/a.kubeconfig" in text and "/etc/kubefabric/b.kubeconfig" in text, path
    one = gc.get(path=["/k8s/connection[cluster-name=a]"], encoding="json_ietf")["notification"][0]["update"]
    assert [u["path"] for u in one] == ["k8s/connection[cluster-name=a]"]
    assert one[0]["val"]["kubefabric-k8s:owner"] == "leaf1"  # RFC 7951: top-level members module-qualified
    assert one[0]["val"]["kubefabric-k8s:enable"] is True
    leaf = gc.get(path=["/k8s/connection[cluster-name=b]/create-vport"], encoding="json_ietf")
    assert leaf["notification"][0]["update"] == [{"path": "k8s/connection[cluster-name=b]/create-vport", "val": True}]
    proto = gc.get(path=["/k8s/connection[cluster-name=b]"], encoding="proto")["notification"][0]["update"]
    vals = {u["path"].rsplit("/", 1)[1]: u["val"] for u in proto}
    assert vals["create-vport"] is True and vals["kube-config"] == "/etc/kubefabric/b.kubeconfig"
    top = gc.get(path=["/"], encoding="json", datatype="config")
    assert "/etc/kubefabric/b.kubeconfig" in json.dumps(top)
    # STATE of a config-only list: entries without config leaves
    state = gc.get(path=["/k8s/connection"], encoding="json_ietf", datatype="state")
    assert '"kube-config":' not in json.dumps(state) and '"status"' in json.dumps(state)


def test_wildcard_with_no_data_is_empty_but_missing_entry_is_not_found(gc):
    resp = gc.get(path=["/k8s/connection", "/vports/vport[ip=*]"], encoding="json_ietf")
    assert [n.get("update") for n in resp["notification"]] == [None, None]  # one (empty) notification per path
    assert code_of(gc.get, path=["/k8s/connection[cluster-name=nope]"], encoding="json_ietf") == grpc.StatusCode.NOT_FOUND


def test_set_transaction_order_delete_replace_update(gc):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a")), ("/k8s/connection[cluster-name=b]", conn("b"))],
           encoding="json_ietf")
    gc.set(delete=["/k8s/connection[cluster-name=a]"],
           replace=[("/k8s/connection[cluster-name=b]", conn("b", enable=False))],
           update=[("/k8s/connection[cluster-name=b]/owner", "leaf9"), ("/k8s/connection[cluster-name=c]", conn("c"))],
           encoding="json_ietf")
    now = connections(gc)
    assert set(now) == {"b", "c"}
    assert now["b"]["enable"] is False and now["b"]["owner"] == "leaf9"
    # replacing the whole list keeps only what is given
    gc.set(replace=[("/k8s/connection", [conn("d")])], encoding="json_ietf")
    assert set(connections(gc)) == {"d"}
    # a delete of something absent is accepted silently
    gc.set(delete=["/k8s/connection[cluster-name=zzz]"], encoding="json_ietf")


def test_fifth_connection_refused_and_nothing_changes(gc):
    gc.set(update=[(f"/k8s/connection[cluster-name=c{i}]", conn(f"c{i}")) for i in range(4)], encoding="json_ietf")
    before = connections(gc)
    with pytest.raises(gNMIException) as info:
        gc.set(update=[("/k8s/connection[cluster-name=c4]", conn("c4"))], encoding="json_ietf")
    err = info.value.orig_exc
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "four" in err.details() or "too many" in err.details()
    assert connections(gc) == before
    # all-or-nothing: a valid change in the same request is not applied either
    code = code_of(gc.set, update=[("/k8s/connection[cluster-name=c0]/enable", False),
                                   ("/k8s/connection[cluster-name=c5]", conn("c5"))], encoding="json_ietf")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert connections(gc) == before


def test_second_overlay_connection_refused_with_yang_message(gc):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a", **{"overlay-vxlan-analytics": True})),
                   ("/k8s/connection[cluster-name=b]", conn("b"))], encoding="json_ietf")
    before = connections(gc)
    with pytest.raises(gNMIException) as info:
        gc.set(update=[("/k8s/connection[cluster-name=b]/overlay-vxlan-analytics", True)], encoding="json_ietf")
    err = info.value.orig_exc
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "At most one Kubernetes connection in a fabric can have overlay-vxlan-analytics enabled" in err.details()
    assert connections(gc) == before


def test_bad_input_gets_the_right_status_and_changes_nothing(gc, raw):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a"))], encoding="json_ietf")
    before = connections(gc)
    cases = [
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]/enable", "yes")], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # wrong type
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]/kube-config", "relative/path")], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # pattern
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]/no-such-leaf", 1)], encoding="json_ietf"),
         grpc.StatusCode.NOT_FOUND),  # unknown element
        (lambda: gc.set(update=[("nomodule:k8s/connection[cluster-name=a]", conn("a"))], encoding="json_ietf"),
         grpc.StatusCode.NOT_FOUND),  # unknown module
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]/state/status", "connected")], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # config false
        (lambda: gc.set(update=[("/vports/vport[ip=10.0.0.1]", {"entity": "x"})], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # config false
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]", {"kube-config": "/x", "state": {"status": "error"}})],
                        encoding="json_ietf"), grpc.StatusCode.INVALID_ARGUMENT),  # state inside a config value
        (lambda: gc.set(update=[("/k8s/connection", {"cluster-name": "x"})], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # a list needs an array
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=a]", conn("other"))], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # key in value differs from key in path
        (lambda: gc.set(update=[("/k8s/connection[cluster-name=*]/enable", False)], encoding="json_ietf"),
         grpc.StatusCode.INVALID_ARGUMENT),  # wildcard outside delete
        # a syntactically correct path the server does not implement: UNIMPLEMENTED (spec 3.3.4's table)
        (lambda: gc.get(path=["/k8s/bogus"], encoding="json_ietf"), grpc.StatusCode.UNIMPLEMENTED),
        (lambda: gc.get(path=["bogus-module:k8s"], encoding="json_ietf"), grpc.StatusCode.UNIMPLEMENTED),
    ]
    for call, code in cases:
        assert code_of(call) == code
        assert connections(gc) == before
    stub, md = raw
    for encoding in (gnmi_pb2.Encoding.Value("ASCII"), gnmi_pb2.Encoding.Value("BYTES"), 42):
        with pytest.raises(grpc.RpcError) as info:
            stub.Get(gnmi_pb2.GetRequest(path=[parse("/k8s")], encoding=encoding), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    bad_paths = [
        gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name="k8s", key={"x": "1"})]),  # keys on a container
        gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name="")]),  # empty element
        gnmi_pb2.Path(element=["k8s", "connection"]),  # deprecated string form
    ]
    for path in bad_paths:
        with pytest.raises(grpc.RpcError) as info:
            stub.Get(gnmi_pb2.GetRequest(path=[path], encoding=4), metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        with pytest.raises(grpc.RpcError) as info:
            stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(path=path, val=gnmi_pb2.TypedValue(json_ietf_val=b"{}"))]),
                     metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
    with pytest.raises(grpc.RpcError) as info:
        stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=parse("/k8s/connection[cluster-name=a]/enable"), val=gnmi_pb2.TypedValue(json_ietf_val=b"{not json"))]),
            metadata=md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=parse("/k8s/connection[cluster-name=a]/enable"), val=gnmi_pb2.TypedValue(proto_bytes=b"\x01"))]),
            metadata=md)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # union_replace (field 6 of a newer gnmi.proto) must be refused, not silently ignored
    union = gnmi_pb2.Update(path=parse("/k8s/connection[cluster-name=u]"),
                            val=gnmi_pb2.TypedValue(json_ietf_val=json.dumps(conn("u")).encode())).SerializeToString()
    channel = grpc.insecure_channel(gc_target(gc))
    call = channel.unary_unary("/gnmi.gNMI/Set", request_serializer=lambda b: b,
                               response_deserializer=gnmi_pb2.SetResponse.FromString)
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x32" + bytes([len(union)]) + union, metadata=md)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()
    assert connections(gc) == before


def gc_target(client) -> str:
    return client._gNMIclient__target_path


def test_scalar_typed_values_set_leaves(raw, gc):
    stub, md = raw
    stub.Set(gnmi_pb2.SetRequest(
        update=[gnmi_pb2.Update(path=parse("/k8s/connection[cluster-name=s]/kube-config"),
                                val=gnmi_pb2.TypedValue(string_val="/etc/k/s")),
                gnmi_pb2.Update(path=parse("/k8s/connection[cluster-name=s]/create-vport"),
                                val=gnmi_pb2.TypedValue(bool_val=True))]), metadata=md)
    assert connections(gc)["s"]["create-vport"] is True
    with pytest.raises(grpc.RpcError) as info:
        stub.Set(gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
            path=parse("/k8s/connection[cluster-name=s]/enable"), val=gnmi_pb2.TypedValue(uint_val=3))]), metadata=md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert connections(gc)["s"]["enable"] is True


def test_authentication_and_read_only_role(agent, gc):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a"))], encoding="json_ietf")
    before = connections(gc)
    wrong = {**agent.gnmi_kwargs("admin"), "password": "wrong-password"}
    client = gNMIclient(**wrong)
    with pytest.raises(gNMIException) as info:
        client.connect()  # Capabilities is the first RPC pygnmi makes
    assert "UNAUTHENTICATED" in str(info.value) or "Unauthenticated" in str(info.value) or "invalid" in str(info.value)
    channel = grpc.insecure_channel(agent.gnmi_addr)
    stub = gnmi_pb2_grpc.gNMIStub(channel)
    for md in ([], [("username", "admin")], [("username", "admin"), ("password", "wrong")],
               [("username", "nobody"), ("password", "x")]):
        for call, req in ((stub.Capabilities, gnmi_pb2.CapabilityRequest()), (stub.Get, gnmi_pb2.GetRequest(path=[parse("/k8s")])),
                          (stub.Set, gnmi_pb2.SetRequest(delete=[parse("/k8s")]))):
            with pytest.raises(grpc.RpcError) as info:
                call(req, metadata=md)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        sub = stub.Subscribe(iter([gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
            mode=1, subscription=[gnmi_pb2.Subscription(path=parse("/k8s"))]))]), metadata=md)
        with pytest.raises(grpc.RpcError) as info:
            list(sub)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as viewer:
        assert "a" in json.dumps(viewer.get(path=["/k8s/connection"], encoding="json_ietf"))
        assert code_of(viewer.set, delete=["/k8s/connection[cluster-name=a]"], encoding="json_ietf") == \
            grpc.StatusCode.PERMISSION_DENIED
        assert code_of(viewer.set, update=[("/k8s/connection[cluster-name=b]", conn("b"))], encoding="json_ietf") == \
            grpc.StatusCode.PERMISSION_DENIED
    assert connections(gc) == before


def test_subscribe_to_connections_with_pygnmi(agent, gc):
    gc.set(update=[("/k8s/connection[cluster-name=a]", conn("a"))], encoding="json_ietf")
    with gNMIclient(**agent.gnmi_kwargs("viewer")) as watcher:
        stream = watcher.subscribe2(subscribe={
            "subscription": [{"path": "/k8s/connection", "mode": "on_change"}],
            "mode": "stream", "encoding": "json_ietf"})
        first = stream.get_update(timeout=5)
        assert first["sync_response"] is True
        assert plain(first["update"]["update"][0]["val"])["cluster-name"] == "a"
        gc.set(update=[("/k8s/connection[cluster-name=b]", conn("b"))], encoding="json_ietf")

        def wait_for(pred):  # the Kubernetes collector also writes the connections' state
            for _ in range(50):
                upd = stream.get_update(timeout=5)["update"]
                if pred(upd):
                    return upd
            raise AssertionError("expected update not seen")

        upd = wait_for(lambda u: any(x["path"] == "k8s/connection[cluster-name=b]" for x in u["update"]))
        assert [plain(x["val"]) for x in upd["update"] if x["path"] == "k8s/connection[cluster-name=b]"][0]["owner"] == "leaf1"
        gc.set(delete=["/k8s/connection[cluster-name=a]"], encoding="json_ietf")
        upd = wait_for(lambda u: "delete" in u)
        assert upd["delete"] == [{"path": "k8s/connection[cluster-name=a]"}]
        stream.close()
        once = watcher.subscribe2(subscribe={"subscription": [{"path": "/k8s/connection"}], "mode": "once",
                                             "encoding": "json_ietf"})
        msgs = list(once)
        assert msgs[-1] == {"sync_response": True}
        poll = watcher.subscribe2(subscribe={"subscription": [{"path": "/k8s/connection"}], "mode": "poll",
                                             "encoding": "json_ietf"})
        initial = poll.get_update(timeout=5)  # the state at subscription time, then sync_response
        assert initial["sync_response"] is True
        poll.close()


def _certs(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(name, issuer=None, issuer_key=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    ca, ca_key = make("kubefabric test CA", ca=True)
    server, server_key = make("leaf1", ca.subject, ca_key,
                              san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client, client_key = make("admin", ca.subject, ca_key)
    files = {}
    for name, obj in (("ca", ca), ("server", server), ("client", client)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    for name, key in (("server-key", server_key), ("client-key", client_key)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return files


def test_tls_and_mutual_tls(tmp_path):
    files = _certs(tmp_path)
    tls = AgentProcess(tmp_path, node_name="tls1", insecure=False,
                       extra_args=["--tls-cert", str(files["server"]), "--tls-key", str(files["server-key"])]).start()
    try:
        kwargs = {**tls.gnmi_kwargs("admin"), "insecure": False, "path_cert": str(files["ca"])}
        with gNMIclient(**kwargs) as client:
            assert client.capabilities()["gnmi_version"] == "0.10.0"
        with pytest.raises(Exception):  # plaintext to a TLS port fails
            with gNMIclient(**tls.gnmi_kwargs("admin"), gnmi_timeout=2) as client:
                client.capabilities()
    finally:
        tls.stop()
    mtls = AgentProcess(tmp_path, node_name="mtls1", insecure=False,
                        extra_args=["--tls-cert", str(files["server"]), "--tls-key", str(files["server-key"]),
                                    "--tls-client-ca", str(files["ca"])]).start()
    try:
        kwargs = {**mtls.gnmi_kwargs("admin"), "insecure": False, "path_root": str(files["ca"]),
                  "path_cert": str(files["client"]), "path_key": str(files["client-key"])}
        with gNMIclient(**kwargs) as client:
            assert client.capabilities()["gnmi_version"] == "0.10.0"
        no_client_cert = {**mtls.gnmi_kwargs("admin"), "insecure": False, "path_cert": str(files["ca"]), "gnmi_timeout": 2}
        with pytest.raises(Exception):
            with gNMIclient(**no_client_cert) as client:
                client.capabilities()
    finally:
        mtls.stop()


def test_restart_keeps_config_and_a_taken_port_fails_loudly(tmp_path):
    first = AgentProcess(tmp_path, node_name="r1").start()
    try:
        with gNMIclient(**first.gnmi_kwargs("admin")) as client:
            client.set(update=[("/k8s/connection[cluster-name=keep]", conn("keep"))], encoding="json_ietf")
        second = AgentProcess(tmp_path, node_name="r2", gnmi_port=first.gnmi_port).start(expect_ready=False)
        assert second.wait_exit(timeout=30) != 0
        assert str(first.gnmi_port) in second.log() and "gNMI" in second.log()
        first.stop()
        first.start()
        with gNMIclient(**first.gnmi_kwargs("admin")) as client:
            assert "keep" in connections(client)
    finally:
        first.stop()
