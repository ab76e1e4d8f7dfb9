"""The checks that keep the code's shape: the import direction, no import loops, ruff, mypy on the core.

The rule (docs/design.md, "Layout"):

    faces (agent.gnmi, agent.netconf, agent.cli, agent.web, agent.metrics)
        -> core <-
    producers (collectors.*)              fabric_sync (implements a core port)

- ``core`` imports nothing else of ours;
- a producer imports only ``core`` (and its own package); the flow sources
  and the connection tracker do not import each other;
- ``fabric_sync`` imports only ``core``;
- a face imports only ``core`` and the shared face helpers (``agent.auth``,
  ``agent.settings``, ``agent.logs``, ``agent.forward``), never a producer,
  the fabric store or another face;
- only start-up (``agent.runtime``, ``agent.commands``, ``agent.demo``,
  ``agent.main``) wires producers and stores; only the demo loads ``sim``;
- nothing outside ``agent`` imports ``agent``.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "agent", "collectors", "fabric_sync", "sim")
FACES = ("agent.gnmi", "agent.netconf", "agent.cli", "agent.web", "agent.metrics")
#: modules every face may import (exact names: the package `agent` itself is its __init__, not its faces)
FACE_HELPERS = frozenset({"agent", "agent.auth", "agent.settings", "agent.logs", "agent.forward", "agent.nacm",
                          "agent.gnmi_proto"})
STARTUP = ("agent.runtime", "agent.commands", "agent.demo", "agent.main")
PRODUCERS = ("collectors.sflow", "collectors.conntrack", "collectors.k8s", "collectors.capture", "collectors.topology")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "_fast" in path.parts and path.name != "__init__.py":
                continue  # copies made by the mypyc build, never committed
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """Our modules that ``name`` imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [module, *submodules]
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != name:
                out.add(resolved)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(sources, forbidden, allowed=(), allowed_exact=frozenset()) -> list[str]:
    """Imports of modules under ``forbidden`` (and not under ``allowed``, nor in ``allowed_exact``) by modules
    under ``sources``.

    ``sources`` are package prefixes, or a set of exact module names.
    """
    bad = []
    for name, targets in GRAPH.items():
        if not (name in sources if isinstance(sources, set) else _within(name, sources)):
            continue
        for target in targets:
            if _within(target, forbidden) and not _within(target, allowed) and target not in allowed_exact:
                bad.append(f"{name} imports {target}")
    return sorted(bad)


def test_core_imports_nothing_else_of_ours():
    assert _violations(["core"], ["agent", "collectors", "fabric_sync", "sim"]) == []


def test_producers_import_only_the_core():
    assert _violations(["collectors"], ["agent", "fabric_sync", "sim"]) == []
    for producer in PRODUCERS:
        others = [p for p in PRODUCERS if p != producer]
        assert _violations([producer], others) == [], producer


def test_the_fabric_store_implements_a_core_port_and_nothing_else():
    assert _violations(["fabric_sync"], ["agent", "collectors", "sim"]) == []


def test_faces_read_the_core_only():
    assert _violations(FACES, ["collectors", "fabric_sync", "sim"]) == []
    for face in FACES:
        assert _violations([face], ["agent"], allowed=[face], allowed_exact=FACE_HELPERS) == [], face


def test_only_start_up_wires_producers_and_only_the_demo_loads_the_simulators():
    for package in ("collectors", "fabric_sync"):
        outside = {m for m in MODULES if not _within(m, (*STARTUP, package))}
        assert _violations(outside, [package]) == [], package
    assert _violations({m for m in MODULES if not _within(m, ("agent.demo", "agent.commands.demo", "sim"))},
                       ["sim"]) == []


def test_nothing_outside_agent_imports_agent():
    assert _violations({m for m in MODULES if not _within(m, ["agent"])}, ["agent"]) == []


def test_no_import_loops():
    """Tarjan's strongly connected components over the run-time import graph: none bigger than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert loops == []


def test_the_checker_sees_a_violation():
    """The rules above can fail: a known producer -> core edge and a planted face -> producer edge are seen."""
    assert "core.ports.flows" in GRAPH["collectors.sflow.producer"]
    GRAPH["agent.gnmi.server"].add("collectors.sflow.collector")
    GRAPH["agent.cli.engine"].add("agent.gnmi.server")
    try:
        assert _violations(FACES, ["collectors"]) == ["agent.gnmi.server imports collectors.sflow.collector"]
        assert _violations(["agent.cli"], ["agent"], allowed=["agent.cli"], allowed_exact=FACE_HELPERS) == [
            "agent.cli.engine imports agent.gnmi.server"]  # a face importing another face
    finally:
        GRAPH["agent.gnmi.server"].discard("collectors.sflow.collector")
        GRAPH["agent.cli.engine"].discard("agent.gnmi.server")


def test_lightweight_core_ports_load_no_yangson():
    """An sFlow worker imports the flow port and the producer: no YANG library comes with them."""
    code = ("import sys; import collectors.sflow.producer, core.ports, core.times; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('yangson', 'grpc', 'aiohttp')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: make venv installs it with the test dependencies")
    return found


def test_ruff_finds_no_undefined_unused_or_redefined_names():
    done = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_passes_on_the_core_and_its_ports():
    done = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
