"""Netvisor argument syntax, help and completion (no I/O)."""
from __future__ import annotations

import pytest

from agent.cli.errors import CliError
from agent.cli.parser import command_help, complete, context_help, general_help, parse


def test_show_filters_time_filters_and_output_options():
    p = parse("vport-show hostname server1 within-last 1h format ip,entity sort-desc ip "
              "parsable-delim , no-show-headers layout vertical")
    assert p.command.name == "vport-show"
    assert p.filters == {"hostname": "server1"}
    assert p.times == {"within-last": "1h"}
    assert p.columns == ["ip", "entity"]
    assert p.sort == ("ip", True)
    assert p.delim == "," and p.headers is False and p.vertical is True


def test_boolean_columns_are_flags():
    assert parse("k8s-connection-show enable").filters == {"enable": True}
    assert parse("k8s-connection-show disable").filters == {"enable": False}
    assert parse("k8s-connection-show no-create-vport overlay-vxlan-analytics").filters == {
        "create-vport": False, "overlay-vxlan-analytics": True}
    assert parse("k8s-connection-show enable no").filters == {"enable": False}


def test_config_values_and_flag_pairs():
    p = parse("k8s-connection-create cluster-name pluribus kube-config /root/.kube/config enable no-create-vport")
    assert p.values == {"cluster-name": "pluribus", "kube-config": "/root/.kube/config",
                        "enable": True, "create-vport": False}
    p = parse("connection-stats-settings-modify disable max-connections 500 idle-timeout 60")
    assert p.values == {"enable": False, "max-connections": 500, "idle-timeout": 60}


def test_quoted_values_and_unique_prefixes():
    assert parse('vport-show portgroup "app:hello world"').filters == {"portgroup": "app:hello world"}
    assert parse("k8s-cni").command.name == "k8s-cni-show"


@pytest.mark.parametrize("line, message", [
    ("foo-show", "unknown command 'foo-show'"),
    ("k8s-connection", "ambiguous command 'k8s-connection'"),
    ("vport-show bogus", "vport-show: unknown parameter 'bogus'"),
    ("vport-show hostname", "vport-show: hostname needs a value"),
    ("vport-show hostname a hostname b", "vport-show: hostname given twice"),
    ("vport-show format ip,nope", "unknown column 'nope'"),
    ("vport-show sort-asc nope", "cannot sort by unknown column 'nope'"),
    ("vport-show sort-asc ip sort-desc ip", "give one of sort-asc and sort-desc"),
    ("vport-show layout sideways", "layout is vertical or horizontal"),
    ("k8s-cni-show snapshot-time 1h", "unknown parameter 'snapshot-time'"),
    ("connection-stats-settings-show within-last 1h", "unknown parameter 'within-last'"),
    ("vport-history-show snapshot-time 1h within-last 2h", "cannot be combined"),
    ("k8s-connection-create cluster-name x", "kube-config is required"),
    ("k8s-connection-create kube-config /x", "cluster-name is required"),
    ("k8s-connection-create cluster-name x kube-config /x enable disable", "enable and disable given more than once"),
    ("k8s-connection-create cluster-name x kube-config /x color red", "unknown parameter 'color'"),
    ("connection-stats-settings-modify max-connections lots", "max-connections must be a number"),
    ("connection-stats-settings-modify idle-timeout 0", "idle-timeout must be in 1..86400"),
    ("connection-stats-settings-modify", "nothing to change"),
    ('vport-show hostname "unterminated', "cannot parse the command line"),
])
def test_bad_arguments_are_one_clear_line(line, message):
    with pytest.raises(CliError) as err:
        parse(line)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_question_mark_is_help():
    p = parse("vport-show ?")
    assert p.command.name == "help" and p.args == ["vport-show"]


def test_help_texts():
    text = general_help()
    for name in ("k8s-connection-create", "vport-show", "vport-history-show", "service-show", "fabric-node-show"):
        assert name in text
    text = command_help(parse("k8s-connection-create cluster-name a kube-config /b").command)
    assert "enable|disable" in text and "create-vport|no-create-vport" in text and "required" in text
    text = context_help("vport-s")
    assert "vport-show" in text and "k8s-cni-show" not in text
    assert "within-last" in context_help("vport-show ")


@pytest.mark.parametrize("line, expected", [
    ("", None),
    ("vport-", ["vport-history-show", "vport-location-show", "vport-show"]),
    ("switch leaf2 vport-", ["vport-history-show", "vport-location-show", "vport-show"]),
    ("k8s-connection-cr", ["k8s-connection-create"]),
    ("vport-show host", ["hostname", "host-network"]),
    ("vport-show sort-asc ent", ["entity"]),
    ("vport-show format ip,ent", ["ip,entity"]),
    ("vport-show hostname ", []),
    ("k8s-connection-modify cluster-name x dis", ["disable"]),
    ("k8s-connection-modify no-cr", ["no-create-vport"]),
    ("pager o", ["on", "off"]),
])
def test_completion(line, expected):
    candidates = complete(line)
    if expected is None:
        assert "vport-show" in candidates and "k8s-connection-create" in candidates
    else:
        assert candidates == expected


def test_completion_skips_used_parameters():
    assert "hostname" not in complete("vport-show hostname server1 ")
    assert "entity" in complete("vport-show hostname server1 ")


def test_readline_completer_walks_the_candidates():
    from agent.cli.shell import readline_completer

    completer = readline_completer(lambda: "vport-show sort-asc ho")
    assert [completer("ho", i) for i in range(3)] == ["hostname", "host-network", None]
