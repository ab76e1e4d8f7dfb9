"""Tables and value formats (no I/O)."""
from __future__ import annotations

from agent.cli import render
from agent.cli.commands import COMMANDS


def _cols(command, names):
    cmd = COMMANDS[command]
    return [cmd.column(n) for n in names]


def test_table_is_header_dashes_and_aligned_columns_like_the_seed():
    rows = [{"cluster-name": "pluribus", "cni-plugin": "flannel", "backend": "host-gw", "network-type": "underlay"}]
    text = render.table(rows, _cols("k8s-cni-show", ["cluster-name", "cni-plugin", "backend", "network-type"]))
    assert text.splitlines() == [
        "cluster-name cni-plugin backend network-type",
        "------------ ---------- ------- ------------",
        "pluribus     flannel    host-gw underlay",
    ]


def test_no_headers_parsable_and_vertical():
    rows = [{"ip": "10.0.0.1", "entity": "a"}, {"ip": "10.0.0.22", "entity": "bb"}]
    cols = _cols("vport-show", ["ip", "entity"])
    assert render.table(rows, cols, headers=False).splitlines() == ["10.0.0.1  a", "10.0.0.22 bb"]
    assert render.parsable(rows, cols, ",").splitlines() == ["ip,entity", "10.0.0.1,a", "10.0.0.22,bb"]
    assert render.parsable(rows, cols, "|", headers=False).splitlines() == ["10.0.0.1|a", "10.0.0.22|bb"]
    assert render.vertical(rows[:1], cols) == "ip:     10.0.0.1\nentity: a"


def test_value_formats():
    assert render.show(True, "bool") == "yes" and render.show(False, "bool") == "no"
    assert render.show(4010000, "usec") == "4.01s"
    assert render.show(850, "usec") == "850us"
    assert render.show(12500, "usec") == "12.50ms"
    assert render.show(9, "secs") == "9s"
    assert render.show(90061, "secs") == "1d1h1m1s"
    assert render.show(0, "secs") == "0s"
    assert render.show(1536, "bytes") == "1.50K"
    assert render.show(300, "bytes") == "300"
    assert render.show(6, "proto") == "tcp" and render.show(47, "proto") == "47"
    assert render.show(["a", "b"], "list") == "a,b"
    assert render.show("2026-11-22T11:00:00.123Z", "time") == "2026-11-22T11:00:00"
    assert render.show(None, "str") == ""


def test_normalize_turns_json_ietf_64bit_strings_into_numbers():
    assert render.normalize("18446744073709551615", "bytes") == 18446744073709551615
    assert render.normalize("true", "bool") is True
    assert render.normalize("x", "list") == ["x"]


def test_json_keeps_raw_values():
    rows = [{"latency": 4010000, "cur-state": "syn-ack", "age": None}]
    cols = _cols("connection-show", ["latency", "cur-state", "age"])
    assert render.as_json(rows, cols) == '[\n  {\n    "latency": 4010000,\n    "cur-state": "syn-ack"\n  }\n]'
