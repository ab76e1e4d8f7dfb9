"""Fuzz the sFlow path: decoder, producer and connection tracker on random and mutated datagrams.

Every input goes through what the collector does with a datagram from the
network: ``decode_datagram`` (must never raise), then every field of every
flow (``iter_flows(...).as_dict()``), then ``observations_from_datagram`` into a
``ConnectionTracker``.  An exception escaping any of them is a finding; a
datagram the decoder could only reject through its last-resort guard
(``malformed`` starting with "undecodable") is counted separately, because it
means a fault was caught by accident rather than recognised.

Inputs (deterministic for a given --seed), in rotation:

* random bytes of random length (0..2000), and random bytes behind a valid
  sFlow v5 header;
* real datagrams from ../shared/testdata/sflow/*.pcap, mutated: byte flips,
  bit flips, 32-bit words overwritten with boundary values (0, 1, 0x7fffffff,
  0xffffffff, the datagram's own length...), truncation, insertion and
  deletion of runs, and splices of two datagrams.

Usage::

    python benchmarks/fuzz_sflow.py [--count N] [--seed S] [--crash-dir DIR] [--json]
    python benchmarks/fuzz_sflow.py --atheris [--count N]   # coverage-guided (pip install atheris)

Prints inputs run, uncaught exceptions, last-resort rejections, malformed
share, rate and peak RSS; exits 1 when anything escaped.  ``make bench``
runs the default 20,000 inputs; docs/hardening.md records the 1,000,000 run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata" / "sflow"
sys.path.insert(0, str(REPO))

from collectors.conntrack.tracker import ConnectionTracker  # noqa: E402
from collectors.sflow.producer import observations_from_datagram  # noqa: E402
from collectors.sflow.decoder import decode_datagram  # noqa: E402
from collectors.sflow.pcap import iter_sflow_payloads  # noqa: E402
from collectors.sflow.producer import iter_flows  # noqa: E402

BOUNDARY_WORDS = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                  0xFFFFFFFE, 0xFFFFFFFF)
SFLOW_V5_HEADER = struct.pack(">II4sIII", 5, 1, bytes([192, 0, 2, 1]), 0, 1, 2)


def corpus(shared: Path = SHARED, per_capture: int = 200) -> list[bytes]:
    """Distinct sFlow payloads of every shared capture (at most `per_capture` from each)."""
    seen: dict[bytes, None] = {}
    for capture in sorted(shared.glob("*.pcap")):
        for i, payload in enumerate(iter_sflow_payloads(capture, ports=None)):
            if i >= per_capture:
                break
            seen.setdefault(bytes(payload), None)
    return list(seen)


class Mutator:
    """Deterministic generator of fuzz inputs from a corpus."""

    def __init__(self, seeds: list[bytes], seed: int = 0) -> None:
        if not seeds:
            raise ValueError("empty corpus: no sFlow datagrams in the shared captures")
        self.seeds = seeds
        self.rng = random.Random(seed)
        self.kinds = (self.random_bytes, self.random_after_header) + (self.mutate,) * 8

    def __call__(self) -> bytes:
        return self.rng.choice(self.kinds)()

    def random_bytes(self) -> bytes:
        r = self.rng
        return r.randbytes(r.choice((r.randrange(0, 32), r.randrange(0, 400), r.randrange(0, 2000))))

    def random_after_header(self) -> bytes:
        r = self.rng
        return SFLOW_V5_HEADER + struct.pack(">I", r.choice((0, 1, 2, r.randrange(0, 1 << 32)))) + \
            r.randbytes(r.randrange(0, 600))

    def mutate(self) -> bytes:
        r = self.rng
        data = bytearray(r.choice(self.seeds))
        for _ in range(r.choice((1, 1, 1, 2, 3, 5, 8))):
            op = r.randrange(8)
            n = len(data)
            if n == 0:
                data += r.randbytes(r.randrange(1, 64))
                continue
            if op == 0:  # a byte set to anything
                data[r.randrange(n)] = r.randrange(256)
            elif op == 1:  # one bit flipped
                i = r.randrange(n)
                data[i] ^= 1 << r.randrange(8)
            elif op in (2, 3) and n >= 4:  # an aligned 32-bit word (length, count, format) set to a boundary
                i = r.randrange(n // 4) * 4
                value = r.choice(BOUNDARY_WORDS + (n, n - i, (n - i) // 4, r.randrange(1 << 32)))
                data[i:i + 4] = struct.pack(">I", value & 0xFFFFFFFF)
            elif op == 4:  # truncated
                del data[r.randrange(n):]
            elif op == 5:  # a run inserted
                i = r.randrange(n + 1)
                data[i:i] = r.randbytes(r.randrange(1, 64))
            elif op == 6:  # a run deleted
                i = r.randrange(n)
                del data[i:i + r.randrange(1, 64)]
            else:  # spliced with another datagram
                other = r.choice(self.seeds)
                data = data[:r.randrange(n + 1)] + other[r.randrange(len(other) + 1):]
        return bytes(data)


class Findings:
    """What escaped, by exception type and where."""

    def __init__(self, crash_dir: Path | None) -> None:
        self.crash_dir = crash_dir
        self.uncaught = 0
        self.undecodable = 0
        self.malformed = 0
        self.samples = 0
        self.examples: dict[str, str] = {}

    def record(self, stage: str, data: bytes, exc: BaseException) -> None:
        self.uncaught += 1
        sig = f"{stage}: {type(exc).__name__}: {exc}"[:200]
        if sig not in self.examples:
            self.examples[sig] = data.hex()
            if self.crash_dir is not None:
                self.crash_dir.mkdir(parents=True, exist_ok=True)
                (self.crash_dir / f"crash-{len(self.examples)}.bin").write_bytes(data)
                (self.crash_dir / f"crash-{len(self.examples)}.txt").write_text(
                    sig + "\n" + "".join(traceback.format_exception(exc)))


def check(data: bytes, tracker: ConnectionTracker, findings: Findings, t: float) -> None:
    """Run one input through the collector's path; record anything that escapes."""
    try:
        dg = decode_datagram(data)
    except Exception as exc:  # noqa: BLE001 - the finding we hunt
        findings.record("decode_datagram", data, exc)
        return
    if dg.malformed is not None:
        findings.malformed += 1
        if dg.malformed.startswith("undecodable"):
            findings.undecodable += 1
            sig = f"undecodable: {dg.malformed}"[:200]
            findings.examples.setdefault(sig, data.hex())
    try:
        for flow in iter_flows(dg, include_discards=True):
            flow.as_dict()
    except Exception as exc:  # noqa: BLE001
        findings.record("iter_flows", data, exc)
    try:
        samples = observations_from_datagram(dg, t)
        findings.samples += len(samples)
        tracker.observe_all(samples)
    except Exception as exc:  # noqa: BLE001
        findings.record("tracker", data, exc)


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(count: int, seed: int = 0, crash_dir: Path | None = None, progress: float = 0.0,
        shared: Path = SHARED) -> dict:
    """Fuzz `count` inputs; returns the figures (see the module docstring)."""
    mutator = Mutator(corpus(shared), seed)
    tracker = ConnectionTracker(max_connections=20_000, idle_timeout=60.0)
    findings = Findings(crash_dir)
    start = last = time.monotonic()
    t = 1_700_000_000.0
    for i in range(count):
        t += 0.0001
        check(mutator(), tracker, findings, t)
        if i % 10_000 == 0:
            tracker.expire(t)
            tracker.take_changes()
            if progress and time.monotonic() - last > progress:
                last = time.monotonic()
                print(f"  {i:,} inputs, {findings.uncaught} uncaught, {findings.undecodable} undecodable, "
                      f"peak RSS {peak_rss_mib():.0f} MiB", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - start
    return {
        "inputs": count,
        "seed": seed,
        "corpus": len(mutator.seeds),
        "uncaught_exceptions": findings.uncaught,
        "undecodable": findings.undecodable,
        "malformed": findings.malformed,
        "samples_tracked": findings.samples,
        "tracker_connections": len(tracker),
        "seconds": round(elapsed, 1),
        "inputs_per_second": round(count / elapsed) if elapsed else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "examples": findings.examples,
    }


def run_atheris(count: int, crash_dir: Path | None) -> None:
    """Coverage-guided fuzzing with atheris (libFuzzer), seeded with the shared captures; exits the process.

    libFuzzer prints its own figures ("Done N runs", peak rss) and stops at the first finding, writing
    the input under --crash-dir.
    """
    import tempfile

    import atheris  # optional: pip install atheris

    seeds = Path(tempfile.mkdtemp(prefix="sflow-corpus-"))
    for i, data in enumerate(corpus()):
        (seeds / f"seed-{i}").write_bytes(data)
    tracker = ConnectionTracker(max_connections=20_000, idle_timeout=60.0)
    findings = Findings(crash_dir)
    runs = [0]

    def one_input(data: bytes) -> None:
        runs[0] += 1
        check(data, tracker, findings, 1_700_000_000.0 + runs[0] * 1e-4)
        if findings.uncaught or findings.undecodable:
            raise RuntimeError(f"finding: {list(findings.examples)[-1]}")
        if runs[0] % 10_000 == 0:
            tracker.expire(1e12)
            tracker.take_changes()

    atheris.instrument_all()
    args = [sys.argv[0], str(seeds), f"-runs={count}", "-max_len=4096", "-rss_limit_mb=2048"]
    if crash_dir is not None:
        crash_dir.mkdir(parents=True, exist_ok=True)
        args.append(f"-artifact_prefix={crash_dir}/")
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20_000, help="inputs to run (default 20,000)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "0")))
    p.add_argument("--crash-dir", type=Path, help="write every distinct failing input here")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--progress", type=float, default=0.0, metavar="SECONDS", help="progress line every SECONDS")
    p.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris instead")
    args = p.parse_args(argv)
    if args.atheris:
        run_atheris(args.count, args.crash_dir)
        return 0
    result = run(args.count, args.seed, args.crash_dir, args.progress)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"sFlow fuzz: {result['inputs']:,} inputs (seed {result['seed']}, corpus {result['corpus']} datagrams) "
              f"in {result['seconds']} s, {result['inputs_per_second']:,}/s")
        print(f"  uncaught exceptions: {result['uncaught_exceptions']}")
        print(f"  last-resort rejections (undecodable): {result['undecodable']}")
        print(f"  malformed (recognised): {result['malformed']:,}; samples tracked: {result['samples_tracked']:,}")
        print(f"  peak RSS: {result['peak_rss_mib']} MiB")
        for sig in list(result["examples"])[:10]:
            print(f"  example: {sig}")
    return 1 if result["uncaught_exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
