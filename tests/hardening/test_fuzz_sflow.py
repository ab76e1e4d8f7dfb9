"""sFlow fuzzing in `make test`: a short run of benchmarks/fuzz_sflow.py and the collector's own entry point.

The long run (1,000,000 inputs) is documented in docs/hardening.md.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.agentproc import REPO

SCALE = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_sflow", REPO / "benchmarks" / "fuzz_sflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz_module()
CORPUS = FUZZ.corpus()


def test_short_fuzz_run_has_no_findings(tmp_path):
    result = FUZZ.run(4000, seed=int(os.environ.get("FUZZ_SEED", "7")), crash_dir=tmp_path / "crashes")
    assert len(CORPUS) >= 20
    assert result["uncaught_exceptions"] == 0, result["examples"]
    assert result["undecodable"] == 0, result["examples"]
    assert result["malformed"] > 0 and result["samples_tracked"] > 0  # the inputs reached every stage


def _datastore():
    """A real Datastore, not started: the collector only needs its state, feed and config."""
    import tempfile

    from core.datastore import Datastore
    from fabric_sync.embedded import EmbeddedFabricStore

    import atexit
    import shutil

    data = Path(tempfile.mkdtemp(prefix="kf-fuzz-"))
    atexit.register(shutil.rmtree, data, True)
    return Datastore("leaf1", data, EmbeddedFabricStore(data, "leaf1"))


DS = _datastore()


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(0, 3000)))
def test_collector_datagram_entry_point_never_raises(data, flips, cut):
    from collectors.conntrack.table import ConnectionTable
    from collectors.sflow.collector import SflowCollector

    table = ConnectionTable(DS.state, DS, DS.feed)
    table.enabled = True
    collector = SflowCollector(DS.state, DS, DS.feed, table, "127.0.0.1:0")
    mutated = bytearray(data)
    for index, value in flips:
        mutated[index % len(mutated)] = value
    if cut is not None:
        mutated = mutated[: cut % (len(mutated) + 1)]
    collector.datagram(bytes(mutated), 1_700_000_000.0)
    collector.datagram(bytes(data), 1_700_000_000.5)
    assert collector._errors == 0  # nothing reached the collector's last-resort guard
    table.flush(1_700_000_001.0)
    collector.flush_stats()
    table.close()
