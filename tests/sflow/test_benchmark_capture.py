"""The benchmark's replayed capture is what it claims: real datagrams, fresh sequence numbers per agent."""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

from collectors.sflow import decode_datagram, iter_sflow_payloads

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "sflow_decode.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sflow_decode_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replayed_capture_rewrites_sequences_and_keeps_content(tmp_path):
    benchmark = load_benchmark()
    capture = tmp_path / "bench.pcap"
    datagrams, samples = benchmark.build_capture(capture, 1000)
    decoded = [decode_datagram(payload) for payload in iter_sflow_payloads(capture)]
    assert len(decoded) == datagrams >= 1000
    assert sum(len(d.samples) for d in decoded) == samples
    assert not any(d.malformed for d in decoded)
    sequences = defaultdict(list)
    for d in decoded:
        sequences[(d.agent, d.sub_agent_id)].append(d.sequence)
    for agent, seen in sequences.items():
        assert seen == list(range(1, len(seen) + 1)), agent
    originals = [decode_datagram(p) for p in benchmark.source_datagrams()]
    first_round = decoded[: len(originals)]
    assert [len(d.samples) for d in first_round] == [len(d.samples) for d in originals]
    assert [d.samples[0] for d in first_round] == [d.samples[0] for d in originals]
