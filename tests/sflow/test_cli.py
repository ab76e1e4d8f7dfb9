"""`kubefabric sflow-decode` end to end, through the real entry point (python -m agent.main)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands import sflow_decode

from . import encoder as enc

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "testdata" / "sflow"
PMACCT = SHARED / "pmacct_sfprobe_vxlan8472_4789.pcap"
SYN, ACK, FIN = 0x02, 0x10, 0x01


def kubefabric(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "sflow-decode", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def pmacct_flows() -> list[dict]:
    done = kubefabric("--json", PMACCT)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_json_one_object_per_flow_sample(pmacct_flows):
    assert len(pmacct_flows) == 2353
    first = pmacct_flows[0]
    assert first["agent"] == "10.99.0.1" and first["sequence"] == 1 and first["sample_sequence"] == 1
    assert (first["sampling_rate"], first["input_ifindex"], first["output_ifindex"]) == (1, 0x3FFFFFFF, 0x3FFFFFFF)
    assert {row["agent"] for row in pmacct_flows} == {"10.99.0.1"}
    assert {row["sequence"] for row in pmacct_flows} <= set(range(1, 421))


def test_json_vxlan_outer_and_inner_fields(pmacct_flows):
    first = pmacct_flows[0]  # tshark: 10.99.0.1:39697 -> 10.99.0.2:8472, VNI 1, 10.244.1.10:51204 -> .20:8080 SYN
    assert (first["src_ip"], first["dst_ip"], first["protocol"], first["src_port"], first["dst_port"]) == (
        "10.99.0.1", "10.99.0.2", 17, 39697, 8472
    )  # fmt: skip
    assert (first["encapsulation"], first["vni"], first["vlan"]) == ("vxlan", 1, None)
    assert (first["inner_src_ip"], first["inner_dst_ip"], first["inner_protocol"]) == ("10.244.1.10", "10.244.1.20", 6)
    assert (first["inner_src_port"], first["inner_dst_port"], first["inner_tcp_flags"]) == (51204, 8080, SYN)
    assert first["truncated"] is False and first["frame_length"] == 128


def test_json_both_vxlan_ports_and_tcp_handshake(pmacct_flows):
    vxlan = [row for row in pmacct_flows if row["encapsulation"] == "vxlan"]
    assert {(row["dst_port"], row["vni"]) for row in vxlan} == {(8472, 1), (4789, 4096)}
    for port, vni, server in ((8472, 1, 8080), (4789, 4096, 9090)):
        flows = [r for r in vxlan if r["vni"] == vni and server in (r["inner_src_port"], r["inner_dst_port"])]
        flags = {r["inner_tcp_flags"] for r in flows}
        assert SYN in flags and SYN | ACK in flags and any(f & FIN for f in flags if f), (port, flags)
        syn = next(r for r in flows if r["inner_tcp_flags"] == SYN)
        syn_ack = next(r for r in flows if r["inner_tcp_flags"] == SYN | ACK)
        assert syn["inner_dst_port"] == server and syn_ack["inner_src_port"] == server
        assert (syn["inner_src_ip"], syn["inner_dst_ip"]) == (syn_ack["inner_dst_ip"], syn_ack["inner_src_ip"])
    pod_networks = {row["inner_src_ip"].rsplit(".", 2)[0] for row in vxlan if row["inner_ip_version"] == 4}
    assert pod_networks == {"10.244", "10.245"}


def test_json_keys_are_the_documented_fields(pmacct_flows):
    from collectors.sflow.producer import FlowRecord

    assert all(list(row) == list(FlowRecord.FIELDS) for row in pmacct_flows)


def test_vxlan_port_option_changes_what_is_decoded():
    done = kubefabric("--json", "--vxlan-port", "4789", PMACCT)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["encapsulation"] for r in rows if r["dst_port"] == 8472} == {"none"}
    assert {r["vni"] for r in rows if r["dst_port"] == 4789} == {4096}


def summary(*args) -> dict[str, str]:
    done = kubefabric(*args)
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


def test_summary_counts_of_the_pmacct_capture():
    counts = summary(PMACCT)
    expected = {
        "datagrams": "420", "flow_samples": "2353", "counter_samples": "15", "discard_samples": "0",
        "other_samples": "0", "malformed": "0", "flows_vxlan": "2346", "flows_geneve": "0", "flows_ipip": "0",
        "flows_none": "7", "truncated_headers": "0",
    }  # fmt: skip
    assert {key: counts[key] for key in expected} == expected
    assert float(counts["cpu_seconds"]) > 0 and int(counts["datagrams_per_cpu_second"]) > 0
    assert summary("--summary", PMACCT)["flows_vxlan"] == "2346"


def test_summary_counts_discards_malformed_and_tunnels(tmp_path):
    tcp = enc.ethernet(enc.ipv4(enc.tcp(1, 2, SYN), 6), 0x0800)
    geneve = enc.ethernet(enc.ipv4(enc.udp(50000, 6081, enc.geneve(5, tcp)), 17), 0x0800)
    ipip = enc.ethernet(enc.ipv4(enc.ipv4(enc.udp(1, 2), 17), 4), 0x0800)
    capture = tmp_path / "mixed.pcap"
    capture.write_bytes(
        enc.pcap(
            [
                enc.datagram(
                    [
                        enc.flow_sample([enc.raw_header(geneve)]),
                        enc.counter_sample([]),
                        enc.flow_sample([enc.raw_header(ipip)]),
                        enc.tagged(1, b"", enterprise=9),
                    ]
                ),
                enc.datagram([enc.discard_sample([enc.raw_header(tcp)]), enc.counter_sample([])]),
                b"\x00\x00\x00\x05garbage",
            ]
        )
    )
    counts = summary(capture)
    assert (counts["datagrams"], counts["malformed"], counts["discard_samples"], counts["counter_samples"]) == (
        "3", "1", "1", "2"
    )  # fmt: skip
    assert (counts["flow_samples"], counts["other_samples"]) == ("2", "1")
    assert (counts["flows_geneve"], counts["flows_ipip"], counts["flows_vxlan"]) == ("1", "1", "0")
    assert "first_problem" in counts
    assert summary("--geneve-port", "6082", capture)["flows_none"] == "1"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not a capture\n", "not a pcap or pcapng capture"),
        (b"", "not a pcap or pcapng capture"),
        (enc.pcap([b"payload"], port=53), "no sFlow datagrams"),
        (enc.pcap([b"\x00\x00\x00\x02 an sflow v2 datagram"]), "none of the 1 datagrams is valid sFlow v5"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "input.pcap"
    path.write_bytes(content)
    for mode in ("--summary", "--json"):
        done = kubefabric(mode, path)
        assert done.returncode == 2
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr


def test_missing_file_exits_2(tmp_path):
    done = kubefabric(tmp_path / "absent.pcap")
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_module_contract_add_parser_and_run(capsys):
    parser = argparse.ArgumentParser()
    sflow_decode.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sflow-decode", "--summary", "--vxlan-port", "4789", "--geneve-port", "6082",
                              str(SHARED / "public-data-encap-vxlan.pcap")])  # fmt: skip
    assert args.func is sflow_decode.run
    assert sflow_decode.run(args) == 0
    out = capsys.readouterr().out
    assert "datagrams: 1" in out and "flows_vxlan: 1" in out
