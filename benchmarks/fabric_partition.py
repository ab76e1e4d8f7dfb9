"""Benchmark: the partition report, from the partition tests in network namespaces.

Runs tests/fabric/test_partition.py (three switches in network namespaces, an etcd member with
TLS and auth and a real agent on each; one switch's fabric link cut and healed; racing gNMI
writers on all three agents across the cut) and prints its figures: writes attempted,
acknowledged, refused, indeterminate (and how many of those etcd committed), lost (must be 0),
resurrected (must be 0), the time from the cut until the isolated agent reports stale, and the
time from heal to convergence.  Beside them, the lease TTL (3 s) and owner grace (3 s) that
bound what an agent can notice.

Needs root (network namespaces); prints "skipped" otherwise.

Usage: python benchmarks/fabric_partition.py
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    if os.geteuid() != 0:
        print("skipped: network namespaces need root")
        return 0
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "tests/fabric/test_partition.py"], cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("partition")]
    print("partition of one switch out of three (lease TTL 3 s, owner grace 3 s):")
    for line in lines:
        print(" ", line)
    if done.returncode != 0 or not lines:
        print(done.stdout[-3000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
