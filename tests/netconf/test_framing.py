"""RFC 6242 framing and the XML guard, without a server."""
from __future__ import annotations

import pytest

from agent.netconf.framing import EOM, FrameDecoder, FramingError, Oversize, encode
from agent.netconf.xmlsafe import XmlError, parse


def _decoder(chunked: bool, limit: int = 1000) -> FrameDecoder:
    d = FrameDecoder(limit)
    d.awaiting_hello = False
    d.chunked = chunked
    return d


def test_eom_split_across_reads():
    d = _decoder(False)
    stream = b"<a/>" + EOM + b"<b/>" + EOM
    out = []
    for i in range(len(stream)):  # one byte at a time
        out += d.feed(stream[i:i + 1])
    assert out == [b"<a/>", b"<b/>"]


def test_hello_stops_after_first_message_then_chunks():
    d = FrameDecoder(1000)
    first = d.feed(b"<hello/>" + EOM + encode(b"<rpc/>", True))
    assert first == [b"<hello/>"]
    d.awaiting_hello = False
    d.chunked = True
    assert d.feed(b"") == [b"<rpc/>"]


def test_chunks_split_and_multi_chunk_message():
    d = _decoder(True)
    stream = b"\n#3\n<rp\n#3\nc/>\n##\n" + encode(b"<x/>", True)
    out = []
    for i in range(0, len(stream), 2):
        out += d.feed(stream[i:i + 2])
    assert out == [b"<rpc/>", b"<x/>"]


@pytest.mark.parametrize("bad", [b"\n#0\n", b"\n#01\nx", b"x#1\n", b"\n#abc\n", b"\n##\n", b"\n#99999999999\n"])
def test_bad_chunk_framing(bad):
    with pytest.raises(FramingError):
        _decoder(True).feed(bad)


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_is_skipped_with_bounded_memory(chunked):
    d = _decoder(chunked, limit=100)
    big = b"<rpc>" + b"x" * 10_000 + b"</rpc>"
    out = []
    framed = encode(big, chunked) + encode(b"<ok/>", chunked)
    for i in range(0, len(framed), 512):
        out += d.feed(framed[i:i + 512])
        assert len(d._buf) + len(d._msg) < 1200
    assert isinstance(out[0], Oversize) and out[0].size >= 10_000
    assert out[1] == b"<ok/>"


def test_xml_guard():
    assert parse(b"<a><b/></a>").tag == "a"
    with pytest.raises(XmlError):
        parse(b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')
    with pytest.raises(XmlError):
        parse(b"<a>" * 100 + b"</a>" * 100)
    with pytest.raises(XmlError):
        parse(b"<a><b></a>")
    with pytest.raises(XmlError):
        parse(b"not xml")
    with pytest.raises(XmlError):
        parse(b"<a>" + b"<b/>" * 300_000 + b"</a>")
