"""`kubefabric sflow-decode FILE.pcap`: decode the sFlow datagrams of a capture.

For checking what a switch really exports (``--json``: one flow per line,
outer and overlay-inner fields side by side) and for measuring the decoder
(``--summary``, the default: counts of a full decode and the decode rate in
datagrams per CPU-second, which ``benchmarks/sflow_decode.py`` compares with
pmacct's sfacctd).  Both modes do the same decoding work; ``--summary`` only
skips the printing.

A file that is not a capture, or a capture without sFlow, is reported in one
line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from collectors.sflow import IMPLEMENTATION
from collectors.sflow.decoder import decode_datagram
from collectors.sflow.packet import DEFAULT_GENEVE_PORT, DEFAULT_VXLAN_PORTS
from collectors.sflow.pcap import SFLOW_PORT, PcapError, iter_sflow_payloads
from collectors.sflow.producer import count_flows, iter_flows
from collectors.sflow.records import CounterSample, DiscardSample, FlowSample

EXIT_OK = 0
EXIT_BAD_INPUT = 2

#: The order --summary prints its counters in.
ENCAPSULATIONS = ("vxlan", "geneve", "ipip", "none")


def add_parser(subparsers) -> None:
    """Register the ``sflow-decode`` subcommand (called by agent.main)."""
    parser = subparsers.add_parser(
        "sflow-decode",
        help="decode the sFlow v5 datagrams in a pcap/pcapng file",
        description="Decode the sFlow v5 datagrams of a capture, including VXLAN/Geneve/IP-in-IP inner packets.",
    )
    parser.add_argument("file", metavar="FILE.pcap", help="pcap or pcapng capture of sFlow datagrams")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print one JSON object per flow sample")
    mode.add_argument("--summary", action="store_true", help="print decode counts and rate (default)")
    parser.add_argument(
        "--vxlan-port",
        type=_port,
        action="append",
        metavar="N",
        help="UDP destination port to decode as VXLAN (repeatable; default 4789 and 8472)",
    )
    parser.add_argument(
        "--geneve-port", type=_port, default=DEFAULT_GENEVE_PORT, metavar="N", help="UDP port decoded as Geneve"
    )
    parser.add_argument(
        "--sflow-port",
        type=_port,
        action="append",
        metavar="N",
        help="UDP port the sFlow datagrams were sent to (repeatable; default 6343)",
    )
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Decode ``args.file``; print flows (--json) or counts (--summary). Returns the exit code."""
    vxlan_ports = frozenset(args.vxlan_port) if args.vxlan_port else DEFAULT_VXLAN_PORTS
    sflow_ports = frozenset(args.sflow_port) if args.sflow_port else frozenset({SFLOW_PORT})
    try:
        if args.json:
            counts = _decode_json(args.file, sflow_ports, vxlan_ports, args.geneve_port, sys.stdout)
        else:
            counts = _decode_summary(args.file, sflow_ports, vxlan_ports, args.geneve_port)
    except PcapError as exc:
        print(f"kubefabric sflow-decode: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error of ours
        return EXIT_OK
    if counts["datagrams"] == 0:
        ports = ", ".join(str(p) for p in sorted(sflow_ports))
        print(f"kubefabric sflow-decode: {args.file}: no sFlow datagrams (UDP port {ports}) in this capture", file=sys.stderr)
        return EXIT_BAD_INPUT
    if counts["malformed"] == counts["datagrams"]:
        print(
            f"kubefabric sflow-decode: {args.file}: none of the {counts['datagrams']} datagrams is valid sFlow v5 "
            f"(first problem: {counts['first_problem']})",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not args.json:
        _print_summary(counts)
    return EXIT_OK


def _new_counts() -> dict:
    counts = {
        "datagrams": 0,
        "malformed": 0,
        "flow_samples": 0,
        "counter_samples": 0,
        "discard_samples": 0,
        "other_samples": 0,
        "truncated_headers": 0,
        "first_problem": None,
    }
    counts.update({f"flows_{name}": 0 for name in ENCAPSULATIONS})
    return counts


def _count_datagram(counts: dict, datagram, sample_kinds: dict) -> None:
    counts["datagrams"] += 1
    if datagram.malformed:
        counts["malformed"] += 1
        if counts["first_problem"] is None:
            counts["first_problem"] = datagram.malformed
    for sample in datagram.samples:
        kind = sample_kinds.get(type(sample), "other_samples")
        counts[kind] += 1


_SAMPLE_KINDS = {
    FlowSample: "flow_samples",
    CounterSample: "counter_samples",
    DiscardSample: "discard_samples",
    "other": "other_samples",
}


def _decode_summary(path: str, sflow_ports, vxlan_ports, geneve_port: int) -> dict:
    """The --json decode without the printing: every datagram decoded, every flow produced."""
    counts = _new_counts()
    encapsulations = {name: 0 for name in ENCAPSULATIONS}
    truncated = 0
    started = time.process_time()
    sample_counts = dict.fromkeys(_SAMPLE_KINDS.values(), 0)
    sample_kinds = _SAMPLE_KINDS
    datagrams = malformed = flow_samples = 0
    for payload in iter_sflow_payloads(path, sflow_ports):
        datagram = decode_datagram(payload, vxlan_ports, geneve_port)
        datagrams += 1
        if datagram.malformed:
            malformed += 1
            if counts["first_problem"] is None:
                counts["first_problem"] = datagram.malformed
        flows, cut = count_flows(datagram, encapsulations)  # every FlowRecord produced and read, as --json
        truncated += cut
        flow_samples += flows
        samples = datagram.samples
        if flows != len(samples):  # iter_flows yields exactly the flow samples: classify only the rest
            for sample in samples:
                kind = type(sample)
                if kind is not FlowSample:
                    sample_counts[sample_kinds.get(kind, "other_samples")] += 1
    counts["cpu_seconds"] = time.process_time() - started
    sample_counts["flow_samples"] += flow_samples
    counts.update(sample_counts, datagrams=datagrams, malformed=malformed)
    for name, value in encapsulations.items():
        counts[f"flows_{name}"] = value
    counts["truncated_headers"] = truncated
    return counts


def _decode_json(path: str, sflow_ports, vxlan_ports, geneve_port: int, out) -> dict:
    counts = _new_counts()
    dumps = json.dumps
    write = out.write
    for payload in iter_sflow_payloads(path, sflow_ports):
        datagram = decode_datagram(payload, vxlan_ports, geneve_port)
        _count_datagram(counts, datagram, _SAMPLE_KINDS)
        for flow in iter_flows(datagram):
            write(dumps(flow.as_dict(), separators=(",", ":")))
            write("\n")
    out.flush()
    return counts


def _print_summary(counts: dict) -> None:
    cpu = counts["cpu_seconds"]
    rate = counts["datagrams"] / cpu if cpu > 0 else float("inf")
    lines = [
        ("datagrams", counts["datagrams"]),
        ("flow_samples", counts["flow_samples"]),
        ("counter_samples", counts["counter_samples"]),
        ("discard_samples", counts["discard_samples"]),
        ("other_samples", counts["other_samples"]),
        ("malformed", counts["malformed"]),
        *((f"flows_{name}", counts[f"flows_{name}"]) for name in ENCAPSULATIONS),
        ("truncated_headers", counts["truncated_headers"]),
        ("cpu_seconds", f"{cpu:.3f}"),
        ("datagrams_per_cpu_second", f"{rate:.0f}"),
        ("decoder", IMPLEMENTATION),
    ]
    if counts["first_problem"]:
        lines.append(("first_problem", counts["first_problem"]))
    for key, value in lines:
        print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand on its own (``python -m agent.commands.sflow_decode FILE``)."""
    parser = argparse.ArgumentParser(prog="kubefabric")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["sflow-decode", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
