"""lldpcli's json0 output -> neighbours: a capture of Debian's lldpd (two servers on a bridge), and bad
input of every kind: a clear error for this source only, the good entries kept, no exception."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors.topology.lldp import LldpFormatError, LldpSource, parse_neighbors

CAPTURE = Path(__file__).with_name("data") / "lldpcli-neighbors.json0"


def test_real_capture_parses_every_field():
    neighbors, problems = parse_neighbors(CAPTURE.read_text())
    assert problems == []
    by_port = {n.port: n for n in neighbors}
    assert set(by_port) == {"p1", "p2"}
    a = by_port["p1"]
    assert a.system_name == "node-a" and a.chassis_id_type == "mac" and len(a.chassis_id) == 17
    assert a.port_id_type == "mac" and a.port_description == "eth0"
    assert "10.20.1.11" in a.management_addresses
    assert not a.network_device          # a server: Station, no Bridge/Router enabled
    assert by_port["p2"].system_name == "node-b.example.com"


def test_no_neighbours_is_an_empty_list():
    assert parse_neighbors('{\n  "lldp": [\n    {\n      \n    }\n  ]\n}\n') == ([], [])


@pytest.mark.parametrize("text, why", [
    ("", "not JSON"),
    ("{lldp", "not JSON"),
    ("[]", "json0"),
    ('{"lldp": {"interface": {"eth0": {}}}}', "json0"),     # lldpcli -f json (not json0)
    ('{"lldp": "x"}', "json0"),
])
def test_documents_that_are_not_json0_are_refused(text, why):
    with pytest.raises(LldpFormatError, match=why):
        parse_neighbors(text)


def test_malformed_entries_are_skipped_and_counted_the_rest_kept():
    doc = json.loads(CAPTURE.read_text())
    interfaces = doc["lldp"][0]["interface"]
    interfaces += [
        "not an object",
        {"name": "p9"},                                             # no chassis
        {"name": "p8", "chassis": [{"id": [{"type": "mac"}]}]},     # chassis without an id value
        {"chassis": [{"id": [{"value": "x"}]}]},                    # no local port
        {"name": "p7", "chassis": [{"id": [{"type": "local", "value": "abc"}], "name": [{"value": 42}],
                                    "mgmt-ip": "10.0.0.1", "capability": "x"}], "port": "?"},   # odd types
    ]
    neighbors, problems = parse_neighbors(json.dumps(doc))
    assert {n.port for n in neighbors} == {"p1", "p2", "p7"}
    assert len(problems) == 4
    odd = next(n for n in neighbors if n.port == "p7")
    assert odd.system_name == "42" and odd.management_addresses == () and odd.port_id == ""


def test_source_reports_errors_and_keeps_the_last_good_neighbours_for_a_while():
    source = LldpSource("/nonexistent.sock", keep_last=60)
    good = source.parse(CAPTURE.read_text(), now=1000.0)
    assert good.status == "up" and good.entries == 2
    broken = source.parse("{garbage", now=1030.0)
    assert broken.status == "error" and "not JSON" in broken.detail and "30s ago" in broken.detail
    assert [n.port for n in broken.data] == ["p1", "p2"]        # a blip loses nothing
    later = source.parse("{garbage", now=1100.0)
    assert later.status == "error" and later.data is None       # but stale data is not served forever
    partial = source.parse('{"lldp": [{"interface": [{"name": "p1"}]}]}', now=1200.0)
    assert partial.status == "error" and "skipped 1 malformed" in partial.detail and partial.data == []


async def test_missing_socket_and_missing_daemon_are_reported(tmp_path, monkeypatch):
    import collectors.topology.lldp as lldp

    monkeypatch.setattr(lldp, "DEFAULT_SOCKETS", (str(tmp_path / "none.socket"),))
    default = await LldpSource().read()
    assert default.status == "unavailable" and "lldpd is not running" in default.detail
    explicit = await LldpSource(str(tmp_path / "gone.socket")).read()
    assert explicit.status == "error" and "gone.socket" in explicit.detail
