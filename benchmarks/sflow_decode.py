"""Benchmark: `kubefabric sflow-decode --summary` against pmacct's sfacctd on the same capture.

Builds a pcap of at least 100,000 real-shaped sFlow datagrams by replaying the
shared captures (shared/testdata/sflow) over and over with rewritten datagram
sequence numbers, then runs both decoders on it as child processes and
compares CPU seconds (user + system of the child and its descendants, from
``resource.getrusage(RUSAGE_CHILDREN)``), so start-up is included for both.

sfacctd reads the capture itself (``pcap_savefile``) and exits at its end
(pcap_savefile_wait is false by default, pcap_savefile_delay 0).  Its print
plugin aggregates the 5-tuple and VNI into a small cache written once to a
file under the temp directory; a large plugin_buffer_size batches the
core-to-plugin pipe so that neither output nor IPC dominates and the figure
is sfacctd's decoding rate (with the 4 MB default pipe and 66 MB default
print cache it measures roughly half as fast).

Usage: python benchmarks/sflow_decode.py [--datagrams N] [--keep DIR]
Prints datagrams and samples per CPU-second for both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata" / "sflow"
sys.path.insert(0, str(REPO))

from collectors.sflow.decoder import decode_datagram  # noqa: E402
from collectors.sflow.pcap import iter_sflow_payloads  # noqa: E402

TARGET_RATIO = 0.5


def source_datagrams() -> list[bytes]:
    """The sFlow payloads of every shared capture, in file order."""
    payloads = []
    for path in sorted(SHARED.glob("*.pcap")):
        payloads.extend(iter_sflow_payloads(path))
    if not payloads:
        raise SystemExit(f"no sFlow captures found in {SHARED}")
    return payloads


def _sequence_offset(payload: bytes) -> int:
    """Offset of the datagram sequence number: after version, address type, address and sub-agent id."""
    (address_type,) = struct.unpack_from(">I", payload, 4)
    return 16 if address_type == 1 else 28


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(">10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes) -> bytes:
    """Ethernet/IPv4/UDP frame 127.0.0.1:50000 -> 127.0.0.1:6343 carrying ``payload`` (UDP checksum 0: none)."""
    udp = struct.pack(">HHHH", 50000, 6343, 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"))
    struct.pack_into(">H", ip, 10, _ipv4_checksum(bytes(ip)))
    return b"\0" * 12 + b"\x08\x00" + bytes(ip) + udp


def build_capture(path: Path, minimum: int) -> tuple[int, int]:
    """Write >= ``minimum`` datagrams to ``path``; return (datagrams, samples)."""
    sources = source_datagrams()
    samples_per_source = [len(decode_datagram(p).samples) for p in sources]
    sequences: dict[bytes, int] = {}
    datagrams = samples = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while datagrams < minimum:
            for payload, sample_count in zip(sources, samples_per_source):
                offset = _sequence_offset(payload)
                agent = payload[8:offset]  # address and sub-agent id: the sequence's scope
                sequences[agent] = sequence = sequences.get(agent, 0) + 1
                rewritten = payload[:offset] + struct.pack(">I", sequence) + payload[offset + 4 :]
                frame = _frame(rewritten)
                seconds, micros = divmod(datagrams, 1_000_000)
                out.write(struct.pack("<IIII", 1_700_000_000 + seconds, micros, len(frame), len(frame)))
                out.write(frame)
                datagrams += 1
                samples += sample_count
    return datagrams, samples


def _child_cpu(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, completed


def time_kubefabric(capture: Path) -> tuple[float, str]:
    command = [sys.executable, "-m", "agent.main", "sflow-decode", "--summary", str(capture)]
    cpu, done = _child_cpu(command, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"kubefabric sflow-decode failed ({done.returncode}): {done.stderr.strip()}")
    return cpu, done.stdout


def time_sfacctd(capture: Path, workdir: Path) -> tuple[float, str] | None:
    sfacctd = shutil.which("sfacctd") or ("/usr/sbin/sfacctd" if os.path.exists("/usr/sbin/sfacctd") else None)
    if sfacctd is None:
        return None
    config = workdir / "sfacctd.conf"
    config.write_text(
        textwrap.dedent(
            f"""\
            daemonize: false
            pcap_savefile: {capture}
            logfile: {workdir / 'sfacctd.log'}
            plugins: print[bench]
            aggregate[bench]: src_host, dst_host, src_port, dst_port, proto, tcpflags, vxlan
            print_output[bench]: csv
            print_output_file[bench]: {workdir / 'sfacctd-out.csv'}
            print_refresh_time[bench]: 60
            print_cache_entries[bench]: 1021
            plugin_pipe_size[bench]: 40960000
            plugin_buffer_size[bench]: 409600
            """
        )
    )
    cpu, done = _child_cpu([sfacctd, "-f", str(config)], timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"sfacctd failed ({done.returncode}): {done.stderr.strip()[:500]}")
    log = (workdir / "sfacctd.log").read_text(errors="replace") if (workdir / "sfacctd.log").exists() else ""
    return cpu, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=100_000, help="minimum datagrams in the capture")
    parser.add_argument("--keep", type=Path, help="write the capture and logs here and keep them")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        capture = workdir / "sflow-bench.pcap"
        datagrams, samples = build_capture(capture, args.datagrams)
        print(f"capture: {datagrams} datagrams, {samples} samples, {capture.stat().st_size / 1e6:.1f} MB")

        ours_cpu, summary = time_kubefabric(capture)
        print("kubefabric sflow-decode --summary:")
        print(textwrap.indent(summary.strip(), "    "))
        ours_rate = datagrams / ours_cpu
        path = next((line.split(": ", 1)[1] for line in summary.splitlines() if line.startswith("decoder: ")), "?")
        print(f"kubefabric decoder: {path}")
        print(
            f"kubefabric: {ours_cpu:.2f} CPU-s  {ours_rate:,.0f} datagrams/CPU-s  {samples / ours_cpu:,.0f} samples/CPU-s"
        )
        theirs = time_sfacctd(capture, workdir)
        if theirs is None:
            print("sfacctd: not installed (apt-get install pmacct); no comparison")
            return 0
        their_cpu, log = theirs
        their_rate = datagrams / their_cpu
        print(
            f"sfacctd:    {their_cpu:.2f} CPU-s  {their_rate:,.0f} datagrams/CPU-s  {samples / their_cpu:,.0f} samples/CPU-s"
        )
        ratio = ours_rate / their_rate
        verdict = "meets" if ratio >= TARGET_RATIO else "below"
        print(f"ratio kubefabric/sfacctd: {ratio:.2f}x ({verdict} the {TARGET_RATIO}x target)")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
