"""Property-based fuzzing of the parsers that read untrusted input.

Contract checked for each: any input ends in a result or in the parser's own
error type (the one the face turns into a clean protocol error), never in
another exception, and never in unbounded memory.

* gNMI path strings (`paths.parse`) and proto paths (`paths.resolve`), and
  Set requests (`edit.plan` + `edit.apply`);
* the CLI parser (`parser.parse`, `complete`, `context_help`) and the whole
  command engine on a real datastore (read-only user, so nothing changes);
* NETCONF framing (`framing.FrameDecoder`, base:1.0 and 1.1) and the XML
  layer (`xmlsafe.parse`).

Example counts are kept small for `make test`; HYPOTHESIS_PROFILE=long (see
docs/hardening.md) runs 50x more.
"""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from agent.gnmi_proto import gnmi_pb2

from core.errors import ConfigError
from core.schema import default_schema
from agent.gnmi import edit as gnmi_edit
from agent.gnmi.paths import PathError, parse, resolve, to_string
from agent.cli import parser as cli_parser
from agent.cli.errors import CliError
from agent.netconf import framing, xmlsafe

SCALE = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1
S = default_schema()


def fuzz(n: int):
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=list(HealthCheck))


# -- gNMI paths ---------------------------------------------------------------------------------------------
NAMES = sorted({seg.split(":")[-1] for p in S.nodes for seg in p.strip("/").split("/")}
               | {leaf for info in S.nodes.values() for leaf in info.leaves})
PATH_CHARS = st.sampled_from(list("/[]=*\\:.-_ \t\n'\"") + ["...", "kubefabric-k8s:", "k8s", "connection",
                                                          "cluster-name", "vport", "ip", "%", "\x00", "é"])
name_st = st.one_of(st.sampled_from(NAMES + ["*", "...", "kubefabric-vport:vports", "kubefabric-k8s:k8s", ""]),
                    st.text(max_size=12))
key_st = st.dictionaries(st.one_of(st.sampled_from(["cluster-name", "ip", "name", "agent-address", "sub-agent-id",
                                                    "vlan", "src-port"]), st.text(max_size=6)),
                         st.one_of(st.sampled_from(["*", "a", "1", "-1", "99999999999999999999", "true", "10.0.0.1"]),
                                   st.text(max_size=10)), max_size=3)


@st.composite
def proto_paths(draw):
    path = gnmi_pb2.Path(origin=draw(st.sampled_from(["", "", "rfc7951", "openconfig", "kubefabric-k8s", "nope"])))
    for _ in range(draw(st.integers(0, 7))):
        elem = path.elem.add(name=draw(name_st))
        for k, v in draw(key_st).items():
            elem.key[k] = v
    if draw(st.integers(0, 20)) == 0:
        path.element.append("legacy")
    return path


@fuzz(400)
@given(st.one_of(st.text(max_size=80), st.lists(PATH_CHARS, max_size=30).map("".join)))
def test_gnmi_path_strings_parse_or_path_error(text):
    try:
        path = parse(text)
    except PathError as exc:
        assert exc.code == "INVALID_ARGUMENT"
        return
    try:
        resolve(S, None, path)
    except PathError as exc:
        assert exc.code in ("INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED")


@fuzz(200)
@given(proto_paths(), proto_paths())
def test_gnmi_proto_paths_resolve_or_path_error(prefix, path):
    try:
        selectors = resolve(S, prefix, path)
    except PathError as exc:
        assert exc.code in ("INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED")
        return
    for s in selectors:
        assert s.node.path in S.nodes


SAFE = st.text(st.characters(blacklist_characters="[]=/\\*", blacklist_categories=("Cs", "Cc", "Zs")),
               min_size=1, max_size=10)


@fuzz(150)
@given(st.lists(st.tuples(SAFE, st.dictionaries(SAFE, SAFE, max_size=2)), min_size=1, max_size=5))
def test_gnmi_path_string_round_trip(elems):
    path = gnmi_pb2.Path()
    for name, keys in elems:
        e = path.elem.add(name=name.replace(":", "_"))
        for k, v in keys.items():
            e.key[k] = v
    assert parse(to_string(path)) == path


def _typed(value) -> gnmi_pb2.TypedValue:
    return gnmi_pb2.TypedValue(json_ietf_val=json.dumps(value).encode())


json_st = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                                 st.text(max_size=20)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)),
                                                               inner, max_size=4)), max_leaves=20)


@fuzz(100)
@given(proto_paths(), st.lists(st.tuples(st.integers(0, 2), proto_paths(), json_st), max_size=4),
       st.booleans())
def test_gnmi_set_requests_plan_and_apply_or_clean_error(prefix, ops, raw_bytes):
    req = gnmi_pb2.SetRequest(prefix=prefix)
    for kind, path, value in ops:
        if kind == 0:
            req.delete.append(path)
        else:
            target = req.update if kind == 1 else req.replace
            tv = gnmi_pb2.TypedValue(bytes_val=b"\xff\x00") if raw_bytes and kind == 2 else _typed(value)
            target.append(gnmi_pb2.Update(path=path, val=tv))
    try:
        planned = gnmi_edit.plan(S, req)
        tree = gnmi_edit.apply({}, S, planned)
    except (PathError, ConfigError):
        return
    assert isinstance(tree, dict)


# -- CLI -----------------------------------------------------------------------------------------------------
WORDS = sorted(set(cli_parser.command_names()) | {"?", "format", "sort-asc", "sort-desc", "layout", "vertical",
                                                  "parsable-delim", "show-headers", "no-show-headers", "enable",
                                                  "disable", "within-last", "older-than", "newer-than", "start-time",
                                                  "end-time", "duration", "snapshot-time", "cluster-name",
                                                  "kube-config", "hostname", "ip", "all", "1d", "-1s", "'", '"', "\\"})
cli_line = st.one_of(st.text(max_size=60),
                     st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=10).map(" ".join))


@fuzz(250)
@given(cli_line)
def test_cli_parser_never_raises_anything_but_cli_error(line):
    try:
        cli_parser.parse(line)
    except CliError as exc:
        assert "\n" not in str(exc).strip() or str(exc).count("\n") < 40
    cli_parser.complete(line)
    cli_parser.context_help(line)


@pytest.fixture(scope="module")
def engine_loop(tmp_path_factory):
    """A real datastore and a read-only CLI engine on it, on one event loop for the module."""
    from agent.auth import User
    from agent.cli.backend import DatastoreBackend
    from agent.cli.engine import Engine
    from core.datastore import Datastore
    from fabric_sync.embedded import EmbeddedFabricStore

    loop = asyncio.new_event_loop()
    data = tmp_path_factory.mktemp("cli-fuzz")
    ds = Datastore("leaf1", data, EmbeddedFabricStore(data, "leaf1"))
    loop.run_until_complete(ds.start())
    engine = Engine(DatastoreBackend(ds, User("viewer", "read-only")))
    yield engine, loop, ds
    loop.run_until_complete(ds.stop())
    loop.close()


@fuzz(300)
@given(cli_line)
def test_cli_engine_answers_every_line_and_read_only_changes_nothing(engine_loop, line):
    engine, loop, ds = engine_loop
    before = json.dumps(ds.config.raw, sort_keys=True)
    outcome = loop.run_until_complete(engine.run(line))
    assert outcome is not None
    assert json.dumps(ds.config.raw, sort_keys=True) == before


# -- NETCONF framing and XML ---------------------------------------------------------------------------------
def _frame_chunked(msg: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        if pos >= len(msg):
            break
        piece = msg[pos:pos + size]
        out += b"\n#%d\n" % len(piece) + piece
        pos += size
    if pos < len(msg):
        out += b"\n#%d\n" % (len(msg) - pos) + msg[pos:]
    return out + b"\n##\n"


def _feed_in_pieces(dec: framing.FrameDecoder, stream: bytes, cuts: list[int]) -> list:
    out, pos = [], 0
    for cut in sorted(set(c % (len(stream) + 1) for c in cuts)) + [len(stream)]:
        out += dec.feed(stream[pos:cut])
        pos = cut
        assert len(dec._buf) <= dec.max_message + 16 and len(dec._msg) <= dec.max_message + 1
    return out


@fuzz(150)
@given(st.lists(st.binary(min_size=1, max_size=300).filter(lambda m: b"]]>]]>" not in m), min_size=1, max_size=4),
       st.lists(st.integers(1, 50), max_size=6), st.lists(st.integers(0, 5000), max_size=8), st.booleans())
def test_framing_reassembles_any_split(messages, sizes, cuts, chunked):
    dec = framing.FrameDecoder(max_message=200)
    dec.awaiting_hello = False
    dec.chunked = chunked
    stream = b"".join(_frame_chunked(m, sizes) if chunked else m + framing.EOM for m in messages)
    got = _feed_in_pieces(dec, stream, cuts)
    want = [m if len(m) <= 200 else "oversize" for m in messages]
    assert [g if isinstance(g, bytes) else "oversize" for g in got] == want


@fuzz(500)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6), st.booleans())
def test_framing_random_streams_bounded_and_only_framing_errors(data, cuts, chunked):
    dec = framing.FrameDecoder(max_message=64)
    dec.awaiting_hello = False
    dec.chunked = chunked
    try:
        _feed_in_pieces(dec, data, cuts)
    except framing.FramingError:
        pass


@fuzz(100)
@given(st.integers(65, 5000), st.booleans())
def test_framing_oversize_message_is_skipped_and_stream_stays_in_step(size, chunked):
    dec = framing.FrameDecoder(max_message=64)
    dec.awaiting_hello = False
    dec.chunked = chunked
    big, small = b"x" * size, b"<rpc/>"
    stream = (_frame_chunked(big, [7]) + _frame_chunked(small, [])) if chunked else big + framing.EOM + small + framing.EOM
    got = _feed_in_pieces(dec, stream, list(range(0, len(stream), 13)))
    assert isinstance(got[0], framing.Oversize) and got[1] == small


RPC = (b'<?xml version="1.0"?><rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
       b'<edit-config><target><running/></target><config><k8s xmlns="urn:kubefabric:k8s"><connection>'
       b'<cluster-name>a</cluster-name><kube-config>/k</kube-config></connection></k8s></config></edit-config></rpc>')
XML_BITS = [b"<", b">", b"</", b"/>", b"&amp;", b"&xxe;", b"<!DOCTYPE r [<!ENTITY a 'b'>]>", b"<![CDATA[", b"]]>",
            b"<?pi x?>", b"<!-- c -->", b'xmlns:a="u"', b"\x00", b"\xff", b"&#0;", b"&#x110000;", b"a:b", b"=", b'"']


@fuzz(500)
@given(st.one_of(st.binary(max_size=400), st.lists(st.sampled_from(XML_BITS + [b"rpc", b"get", b" "]), max_size=40)
                 .map(b"".join),
                 st.tuples(st.integers(0, len(RPC)), st.integers(0, len(RPC)), st.sampled_from(XML_BITS))
                 .map(lambda t: RPC[:t[0]] + t[2] + RPC[t[1]:])))
def test_xml_parser_only_xml_errors(data):
    try:
        root = xmlsafe.parse(data)
    except xmlsafe.XmlError:
        return
    assert isinstance(root.tag, str)


@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><rpc>&lol2;</rpc>',
    b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rpc>&x;</rpc>',
    b'<rpc>' + b"<a>" * 100 + b"</a>" * 100 + b"</rpc>",
    b'<rpc>' + b"<a/>" * 250_000 + b"</rpc>",
    b'<rpc>&unknown;</rpc>',
])
def test_xml_attacks_refused(doc):
    with pytest.raises(xmlsafe.XmlError):
        xmlsafe.parse(doc)
