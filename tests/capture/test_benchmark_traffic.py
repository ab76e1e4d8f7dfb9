"""The capture benchmark's traffic is what it claims: control packets in VXLAN that the kernel filter admits,
four per connection, a valid pcap file tshark reads the same way."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pcapy
import pytest

from collectors.capture.frames import decode_frame

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "capture.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("capture_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_traffic_file_is_control_packets_the_filter_admits(tmp_path):
    bench = load_benchmark()
    frames = bench.control_frames(300)
    program = pcapy.compile(pcapy.DLT_EN10MB, 256, bench.FILTER, 1, 0)
    decoded = [decode_frame(f, frozenset({4789, 8472})) for f in frames]
    assert len(frames) == 1200 and all(type(d) is tuple for d in decoded)
    assert all(program.filter(f) for f in frames)
    assert Counter(d[7] for d in decoded) == {0x02: 300, 0x12: 300, 0x11: 600}
    assert len({(d[3], d[5]) for d in decoded if d[7] == 0x02}) == 300  # 300 distinct clients
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    path = tmp_path / "control.pcap"
    bench.write_pcap(path, frames)
    done = subprocess.run(["tshark", "-r", str(path), "-d", "udp.port==8472,vxlan", "-T", "fields", "-e",
                           "tcp.flags", "-e", "ip.checksum.status"], capture_output=True, text=True, check=True,
                          timeout=60)
    lines = done.stdout.splitlines()
    assert len(lines) == 1200 and Counter(line.split()[0] for line in lines)["0x0002"] == 300
