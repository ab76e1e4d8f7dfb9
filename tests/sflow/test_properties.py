"""Property tests: no input makes the decoder or the producer raise."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.sflow import decode_datagram, iter_flows, iter_sflow_payloads

from . import encoder as enc

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "sflow"


def _real_datagrams() -> list[bytes]:
    """A few datagrams of every shared capture (all of the small ones)."""
    found = []
    for capture in sorted(SHARED.glob("*.pcap")):
        found.extend(list(iter_sflow_payloads(capture))[:20])
    return found


REAL = _real_datagrams()
HAND_BUILT = [
    enc.datagram([enc.counter_sample([enc.vlan_counters(1, 2, 3, 4, 5, 6), enc.processor_counters(1, 2, 3, 4, 5)])]),
    enc.datagram([enc.discard_sample([enc.raw_header(bytes(60)), enc.vni_record(7)])], agent="2001:db8::1"),
    enc.datagram([enc.expanded_flow_sample([enc.extended_gateway("192.0.2.1", 1, 2, 3, [(2, [4, 5])], [6], 7)])]),
]
CORPUS = REAL + HAND_BUILT


def decode_everything(data: bytes) -> None:
    """What a consumer does: decode, then read every field of every flow."""
    datagram = decode_datagram(data)
    assert datagram.malformed is None or isinstance(datagram.malformed, str)
    # Faults must be recognised as such, not caught by the decoder's last-resort guard.
    assert not (datagram.malformed or "").startswith("undecodable"), datagram.malformed
    for flow in iter_flows(datagram, include_discards=True):
        flow.as_dict()


def test_corpus_is_not_empty():
    assert len(REAL) >= 20


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    decode_everything(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_after_a_valid_header_never_raise(tail):
    decode_everything(enc.u32(5, 1) + bytes([192, 0, 2, 1]) + enc.u32(0, 1, 2, 3) + tail)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(CORPUS),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(0, 4000)),
)
def test_mutated_real_datagrams_never_raise(data, flips, cut):
    mutated = bytearray(data)
    for index, value in flips:
        mutated[index % len(mutated)] = value
    if cut is not None:
        mutated = mutated[: cut % (len(mutated) + 1)]
    decode_everything(bytes(mutated))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CORPUS), st.integers(0, 2**32 - 1), st.integers(0, 200))
def test_lengths_and_counts_set_to_anything_never_raise(data, value, word):
    """Length and count words are what a decoder trusts most: overwrite any 32-bit word with anything."""
    mutated = bytearray(data)
    offset = (word * 4) % max(4, len(mutated) - 3)
    mutated[offset : offset + 4] = value.to_bytes(4, "big")
    decode_everything(bytes(mutated))
