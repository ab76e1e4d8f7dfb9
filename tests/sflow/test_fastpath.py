"""The compiled decoder (collectors/sflow/_fast, built by `make venv`) gives exactly the pure-Python results.

The pure-Python modules are loaded a second time, from the same files, as the
package ``_sflow_pure`` (their own record classes; ``ParsedPacket`` is shared),
so both decoders run side by side in this process.  Every datagram of every
shared capture, truncated and mutated variants of them, and hypothesis'
mutations are decoded by both and compared field by field, records, parsed
packets and flow records included.  Without a compiled build these tests
skip, saying why (``collectors.sflow.IMPLEMENTATION``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collectors.sflow as sflow
from collectors.sflow import decode_datagram, iter_flows, iter_sflow_payloads

from . import encoder as enc

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "testdata" / "sflow"
COMPILED = sflow.IMPLEMENTATION.startswith("compiled")
needs_compiled = pytest.mark.skipif(not COMPILED, reason=f"sFlow decoder in use: {sflow.IMPLEMENTATION}")


def _load_pure() -> types.SimpleNamespace:
    """decoder and producer from collectors/sflow/*.py, as plain Python, under the package name _sflow_pure."""
    package = types.ModuleType("_sflow_pure")
    package.__path__ = [str(REPO / "collectors" / "sflow")]
    sys.modules["_sflow_pure"] = package
    return types.SimpleNamespace(
        decoder=importlib.import_module("_sflow_pure.decoder"), producer=importlib.import_module("_sflow_pure.producer")
    )


PURE = _load_pure()


def canonical(value):
    """A plain, comparable form of anything the decoder returns (records by class name and fields)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return ("bytes", value.hex())
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, tuple):
        return (type(value).__name__, tuple(canonical(item) for item in value))
    if dataclasses.is_dataclass(value):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return (type(value).__name__, fields)
    raise TypeError(f"unexpected {type(value).__name__} in a decoded datagram")


def both(data: bytes, vxlan_ports=frozenset({4789, 8472}), geneve_port=6081) -> tuple:
    """(compiled, pure) canonical results for one datagram, flows included."""
    results = []
    for decode, flows in ((decode_datagram, iter_flows), (PURE.decoder.decode_datagram, PURE.producer.iter_flows)):
        datagram = decode(data, vxlan_ports, geneve_port)
        results.append((canonical(datagram), [flow.as_dict() for flow in flows(datagram, include_discards=True)]))
    return tuple(results)


def shared_datagrams() -> list[bytes]:
    found = []
    for capture in sorted(SHARED.glob("*.pcap")):
        found.extend(iter_sflow_payloads(capture))
    return found


def test_pure_modules_are_really_pure():
    assert not PURE.decoder._COMPILED and PURE.decoder.__file__.endswith("decoder.py")
    assert PURE.decoder.decode_datagram(shared_datagrams()[0]).malformed is None


@needs_compiled
def test_compiled_modules_are_in_use():
    assert sflow.decoder.__name__ == "collectors.sflow._fast.decoder" and sflow.decoder._COMPILED
    from collectors.sflow import packet, producer, records

    assert {packet.__name__, producer.__name__, records.__name__} == {
        "collectors.sflow._fast.packet", "collectors.sflow._fast.producer", "collectors.sflow._fast.records"
    }  # fmt: skip


@needs_compiled
@pytest.mark.parametrize("capture", sorted(p.name for p in SHARED.glob("*.pcap")))
def test_every_shared_capture_decodes_identically(capture):
    payloads = list(iter_sflow_payloads(SHARED / capture))  # none in a capture of plain VXLAN traffic
    for index, data in enumerate(payloads):
        compiled, pure = both(data)
        assert compiled == pure, f"{capture} datagram {index}"
        compiled, pure = both(data, frozenset({4789}), 6082)
        assert compiled == pure, f"{capture} datagram {index} (other tunnel ports)"


@needs_compiled
def test_truncated_and_mutated_datagrams_decode_identically():
    rng = random.Random(6343)
    per_capture = [list(iter_sflow_payloads(capture))[:3] for capture in sorted(SHARED.glob("*.pcap"))]
    for data in [data for first in per_capture for data in first]:
        for cut in range(0, len(data), 5):
            compiled, pure = both(data[:cut])
            assert compiled == pure, f"cut at {cut}"
        for _ in range(30):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            compiled, pure = both(bytes(mutated))
            assert compiled == pure, bytes(mutated).hex()


@needs_compiled
def test_hand_built_datagrams_decode_identically():
    tcp = enc.ethernet(enc.ipv4(enc.tcp(1, 2, 0x02), 6), 0x0800)
    vxlan = enc.ethernet(enc.ipv4(enc.udp(40000, 4789, enc.vxlan(7, tcp)), 17), 0x0800, [30])
    datagrams = [
        enc.datagram([enc.flow_sample([enc.extended_switch(1, 0, 2, 0), enc.raw_header(vxlan)])]),
        enc.datagram([enc.flow_sample([enc.extended_switch(1, 0, 2, 0), enc.raw_header(vxlan[:60])])]),
        enc.datagram([enc.counter_sample([enc.vlan_counters(1, 2, 3, 4, 5, 6), enc.processor_counters(1, 2, 3, 4, 5)])]),
        enc.datagram([enc.discard_sample([enc.raw_header(tcp), enc.vni_record(7)])], agent="2001:db8::1"),
        enc.datagram([enc.expanded_flow_sample([enc.extended_gateway("192.0.2.1", 1, 2, 3, [(2, [4, 5])], [6], 7)])]),
    ]
    for data in datagrams:
        compiled, pure = both(data)
        assert compiled == pure
        for other in (bytearray(data), memoryview(data)):
            assert canonical(decode_datagram(other)) == compiled[0]


REAL = shared_datagrams()[:60]


@needs_compiled
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(REAL or [b""]),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6),
    st.one_of(st.none(), st.integers(0, 4000)),
)
def test_fuzzed_datagrams_decode_identically(data, flips, cut):
    mutated = bytearray(data)
    for index, value in flips:
        if mutated:
            mutated[index % len(mutated)] = value
    if cut is not None:
        mutated = mutated[: cut % (len(mutated) + 1)]
    compiled, pure = both(bytes(mutated))
    assert compiled == pure


def test_summary_says_which_decoder_ran():
    """`sflow-decode --summary` names the decoder; KUBEFABRIC_SFLOW_PURE=1 forces the pure-Python one."""
    capture = SHARED / "public-data-qinq.pcap"
    for env, expected in (({}, sflow.IMPLEMENTATION), ({"KUBEFABRIC_SFLOW_PURE": "1"}, "pure Python (")):
        done = subprocess.run(
            [sys.executable, "-m", "agent.main", "sflow-decode", "--summary", str(capture)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
        line = next(line for line in done.stdout.splitlines() if line.startswith("decoder: "))
        assert line.split(": ", 1)[1].startswith(expected), line


def test_stale_build_is_not_used(tmp_path, monkeypatch):
    """A compiled build whose stamp does not match the sources is left alone: the pure-Python decoder runs."""
    from collectors.sflow import _fast

    here = tmp_path / "_fast"
    here.mkdir()
    monkeypatch.setattr(_fast, "_HERE", here)
    monkeypatch.delenv(_fast.PURE_ENV, raising=False)
    (here / _fast.STAMP_NAME).write_text("0" * 64 + "\n")
    for name in _fast.COMPILED_MODULES + _fast.SHARED_MODULES:
        (tmp_path / f"{name}.py").write_text("")  # source_digest reads <_HERE>/../<name>.py
    assert _fast.activate("collectors.sflow").startswith("pure Python (compiled decoder is stale")
    (here / _fast.STAMP_NAME).unlink()
    assert _fast.activate("collectors.sflow").startswith("pure Python (compiled decoder not built")
