"""Unit tests: path parsing and resolution, the wire encoder, the coalescing queue, the index."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from agent.gnmi_proto import gnmi_pb2

from core.changefeed import Change
from core.schema import default_schema
from agent.gnmi import encode
from agent.gnmi.coalesce import CoalescingQueue
from agent.gnmi.match import ALL, Index
from agent.gnmi.paths import WILD, PathError, parse, resolve, to_string

S = default_schema()
VPORT = S.nodes["/kubefabric-vport:vports/vport"]
EXPORTER = S.nodes["/kubefabric-sflow:sflow-collector/statistics/exporter"]


def sel(text):
    return [(s.node.path, s.keys, s.leaf, s.subtree) for s in resolve(S, None, parse(text))]


def test_path_forms_resolve_to_the_same_node():
    want = [("/kubefabric-k8s:k8s/connection", ("a",), None, True)]
    for text in ("/k8s/connection[cluster-name=a]", "kubefabric-k8s:k8s/connection[cluster-name=a]",
                 "/kubefabric-k8s:k8s/connection[cluster-name=a]", "kubefabric-k8s:/k8s/connection[cluster-name=a]",
                 "rfc7951:/k8s/connection[cluster-name=a]"):
        assert sel(text) == want, text
    prefix = parse("/k8s")
    assert [(s.node.path, s.keys) for s in resolve(S, prefix, parse("connection[cluster-name=a]"))] == \
        [("/kubefabric-k8s:k8s/connection", ("a",))]


def test_wildcards():
    assert sel("/k8s/connection") == sel("/k8s/connection[cluster-name=*]") == \
        [("/kubefabric-k8s:k8s/connection", (WILD,), None, True)]
    assert {p for p, *_ in sel("/k8s/*")} == {"/kubefabric-k8s:k8s/connection", "/kubefabric-k8s:k8s/cni",
                                              "/kubefabric-k8s:k8s/service", "/kubefabric-k8s:k8s/node"}
    assert sel("/k8s/.../pod-count") == [("/kubefabric-k8s:k8s/connection/state", (WILD,), "pod-count", False)]
    assert len(sel("/")) == len(S.top) == len(sel("/..."))
    # typed keys: integers compare as integers
    assert sel("/sflow-collector/statistics/exporter[agent-address=10.0.0.1][sub-agent-id=3]")[0][1] == ("10.0.0.1", 3)
    assert sel("/sflow-collector/statistics/exporter[sub-agent-id=3]")[0][1] == (WILD, 3)


@pytest.mark.parametrize("text,code", [
    ("/k8s/nope", "NOT_FOUND"), ("nomod:/k8s", "NOT_FOUND"), ("/kubefabric-vport:k8s", "NOT_FOUND"),
    ("/k8s/connection[foo=1]", "NOT_FOUND"), ("/k8s[x=1]", "INVALID_ARGUMENT"),
    ("/sflow-collector/statistics/exporter[sub-agent-id=x]", "INVALID_ARGUMENT"),
    ("/k8s/connection/kube-config/deeper", "NOT_FOUND"),
])
def test_bad_paths(text, code):
    with pytest.raises(PathError) as info:
        resolve(S, None, parse(text))
    assert info.value.code == code


@pytest.mark.parametrize("text", ["/a[", "/a]b", "/a[b]", "a//b", "/a[k=v]x"])
def test_bad_path_syntax(text):
    with pytest.raises(PathError) as info:
        parse(text)
    assert info.value.code == "INVALID_ARGUMENT"


names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
key_values = st.text(st.characters(blacklist_characters="]\\/", blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, st.dictionaries(names, key_values, max_size=2)), min_size=1, max_size=5))
def test_path_string_round_trip(elems):
    path = gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=n, key=k) for n, k in elems])
    assert parse(to_string(path)) == path


leaf_values = st.one_of(st.text(max_size=20), st.integers(0, 2**64 - 1), st.integers(-2**63, -1), st.booleans(),
                        st.lists(st.text(max_size=5), max_size=3))


@settings(max_examples=60, deadline=None)
@given(ip=st.text(min_size=1, max_size=15), values=st.dictionaries(st.sampled_from(list(VPORT.leaves)), leaf_values,
                                                                   min_size=1), ts=st.integers(1, 2**62))
def test_wire_encoding_matches_protobuf(ip, values, ts):
    enc = encode.Encoder(encode.JSON_IETF, origin="kubefabric-vport", target="t")
    items = []
    enc.node_updates(VPORT, (ip,), values, items, duplicates=2)
    items.append(enc.delete(VPORT, (ip,), "entity"))
    resp = gnmi_pb2.SubscribeResponse.FromString(encode.subscribe_update(enc.notification(ts, items)))
    n = resp.update
    assert n.timestamp == ts and n.prefix.origin == "kubefabric-vport" and n.prefix.target == "t"
    assert to_string(n.update[0].path) == to_string(gnmi_pb2.Path(elem=[
        gnmi_pb2.PathElem(name="vports"), gnmi_pb2.PathElem(name="vport", key={"ip": ip})]))
    assert json.loads(n.update[0].val.json_ietf_val) == {f"kubefabric-vport:{k}": v for k, v in values.items()}
    assert n.update[0].duplicates == 2
    assert [e.name for e in n.delete[0].elem] == ["vports", "vport", "entity"]
    proto = encode.Encoder(encode.PROTO)
    items = []
    proto.node_updates(VPORT, (ip,), values, items)
    n = gnmi_pb2.SubscribeResponse.FromString(encode.subscribe_update(proto.notification(ts, items))).update
    got = {u.path.elem[-1].name: u.val for u in n.update}
    for name, value in values.items():
        tv = got[name]
        if isinstance(value, bool):
            assert tv.bool_val is value
        elif isinstance(value, int):
            unsigned = value >= 0 and (VPORT.leaves[name].base == "uint" or value >= 2**63)
            assert (tv.uint_val if unsigned else tv.int_val) == value
        elif isinstance(value, list):
            assert [e.string_val for e in tv.leaflist_val.element] == value
        else:
            assert tv.string_val == value


@pytest.mark.parametrize("size", [0, 100, 127, 128, 200, 16383, 16384, 70000])
def test_long_values_and_paths(size):
    for encoding in (encode.JSON_IETF, encode.PROTO):
        enc = encode.Encoder(encoding)
        items = []
        key = ("k" * (size // 2 or 1),)
        enc.node_updates(VPORT, key, {"portgroup": "x" * size}, items, duplicates=size)
        n = gnmi_pb2.SubscribeResponse.FromString(encode.subscribe_update(enc.notification(1, items))).update
        u = n.update[0]
        assert u.duplicates == size and u.path.elem[1].key["ip"] == key[0]
        got = json.loads(u.val.json_ietf_val)["kubefabric-vport:portgroup"] if encoding == encode.JSON_IETF \
            else u.val.string_val
        assert got == "x" * size


def test_json_ietf_writes_64bit_integers_as_strings_and_json_does_not():
    state = S.nodes["/kubefabric-k8s:k8s/connection/state"]
    for encoding, want in ((encode.JSON_IETF, "12345678901"), (encode.JSON, 12345678901)):
        items = []
        encode.Encoder(encoding).node_updates(state, ("a",), {"events": 12345678901, "pod-count": 2}, items)
        n = gnmi_pb2.SubscribeResponse.FromString(encode.subscribe_update(encode.Encoder(encoding).notification(1, items)))
        val = n.update.update[0].val
        if encoding == encode.JSON_IETF:
            assert json.loads(val.json_ietf_val) == {"kubefabric-k8s:events": want, "kubefabric-k8s:pod-count": 2}
        else:
            assert json.loads(val.json_val) == {"events": want, "pod-count": 2}


def test_get_response_and_packing():
    enc = encode.Encoder(encode.JSON_IETF)
    items = []
    for i in range(2500):
        enc.node_updates(VPORT, (f"10.0.0.{i}",), {"entity": f"p{i}"}, items)
    packed = encode.pack(enc, 5, items, max_updates=1000)
    assert [len(gnmi_pb2.SubscribeResponse.FromString(m).update.update) for m in packed] == [1000, 1000, 500]
    resp = gnmi_pb2.GetResponse.FromString(encode.get_response([enc.notification(7, items[:2]), enc.notification(8, [])]))
    assert [len(n.update) for n in resp.notification] == [2, 0]


def change(key, values, removed=(), ts=1):
    return Change(VPORT.path, (key,), values, removed, ts)


def test_coalescing_merges_a_nodes_intermediate_values():
    stats = {}
    q = CoalescingQueue(stats)
    first = {"power": "Pending", "entity": "p"}
    q.put(change("a", first))
    q.put(change("b", {"power": "Running"}))
    q.put(change("a", {"power": "Running"}, ts=2))
    q.put(change("a", {"power": "Failed"}, removed=("entity",), ts=3))
    assert first == {"power": "Pending", "entity": "p"}  # the feed's dicts are never mutated
    assert stats["coalesced"] == 2 and len(q) == 2
    a, b = q.drain()
    assert (a.key, a.values, tuple(a.removed), a.ts, a.duplicates) == (("a",), {"power": "Failed"}, ("entity",), 3, 2)
    assert b.key == ("b",) and len(q) == 0 and not q.event.is_set()


def test_coalescing_delete_and_recreate():
    q = CoalescingQueue({})
    q.put(change("a", {"power": "x"}))
    q.put(change("a", None))
    (a,) = q.drain()
    assert a.deleted and a.values is None
    q.put(change("a", None))
    q.put(change("a", {"power": "new", "entity": "e"}))
    (a,) = q.drain()
    assert a.recreated and a.values == {"power": "new", "entity": "e"}


def test_coalescing_queue_is_bounded():
    q = CoalescingQueue({}, max_nodes=3)
    for k in "abcd":
        q.put(change(k, {"power": "x"}))
    assert len(q) == 3 and q.overflowed
    assert q.drain(limit=2)[0].key == ("a",) and len(q) == 1


def test_index_matches_keys_and_leaves():
    index = Index()
    for s in resolve(S, None, parse("/vports/vport[ip=10.0.0.1]")) + resolve(S, None, parse("/vports/vport/entity")):
        index.add(s)
    assert index.match(VPORT.path, ("10.0.0.1",)) is ALL
    assert index.match(VPORT.path, ("10.0.0.2",)) == {"entity"}
    assert index.match(EXPORTER.path, ("1.1.1.1", 1)) is False
    other = Index()
    for s in resolve(S, None, parse("/k8s/connection[cluster-name=a]/state")):
        other.add(s)
    assert other.deletes_ancestor("/kubefabric-k8s:k8s/connection", ("a",))
    assert not other.deletes_ancestor("/kubefabric-k8s:k8s/connection", ("b",))
