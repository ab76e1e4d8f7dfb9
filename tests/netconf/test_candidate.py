"""Candidate versus running, locks between sessions, confirmed commit (RFC 6241 8.3, 8.4, 7.5)."""
from __future__ import annotations

import time

import pytest
from ncclient.operations import RPCError

from .helpers import connect, connection_xml, running_names


def test_candidate_is_private_until_commit(port):
    with connect(port) as a, connect(port) as b:
        a.edit_config(target="candidate", config=connection_xml("cand"))
        assert running_names(a, "candidate") == ["cand"]
        assert running_names(b, "candidate") == ["cand"]  # candidate is shared between sessions
        assert running_names(b) == []  # running untouched
        a.discard_changes()
        assert running_names(a, "candidate") == []
        a.edit_config(target="candidate", config=connection_xml("cand"))
        a.commit()
        assert running_names(b) == ["cand"]


def test_candidate_commit_refused_by_fabric_caps_changes_nothing(port):
    with connect(port) as m:
        for i in range(4):
            m.edit_config(target="candidate", config=connection_xml(f"c{i}", overlay_vxlan_analytics=(i == 0)))
        m.commit()
        assert running_names(m) == ["c0", "c1", "c2", "c3"]
        m.edit_config(target="candidate", test_option="set", config=connection_xml("c4"))
        with pytest.raises(RPCError) as err:
            m.commit()
        e = err.value
        assert (e.type, e.tag) == ("application", "operation-failed")
        assert e.xml.findtext("{*}error-app-tag") == "too-many-elements"
        assert e.path and "connection" in e.path
        assert "four" in e.message
        assert running_names(m) == ["c0", "c1", "c2", "c3"]
        m.discard_changes()


def test_lock_contention_between_two_sessions(port):
    with connect(port) as a, connect(port) as b:
        a.lock("running")
        with pytest.raises(RPCError) as err:
            b.lock("running")
        assert err.value.tag == "lock-denied"
        assert a.session_id in err.value.info
        with pytest.raises(RPCError) as err:
            b.edit_config(target="running", config=connection_xml("blocked"))
        assert err.value.tag == "in-use"
        with pytest.raises(RPCError) as err:
            b.unlock("running")
        assert err.value.tag == "operation-failed"
        a.edit_config(target="running", config=connection_xml("holder"))  # the holder may write
        a.unlock("running")
        b.lock("running")
        b.unlock("running")
        # candidate lock: the holder's edits are private to it; dirty candidate cannot be locked
        a.lock("candidate")
        with pytest.raises(RPCError) as err:
            b.edit_config(target="candidate", config=connection_xml("x"))
        assert err.value.tag == "in-use"
        a.edit_config(target="candidate", config=connection_xml("mine"))
        with pytest.raises(RPCError) as err:
            b.commit()
        assert err.value.tag == "in-use"
        a.unlock("candidate")
        with pytest.raises(RPCError) as err:
            b.lock("candidate")  # it holds uncommitted changes
        assert err.value.tag == "lock-denied"
        a.discard_changes()


def test_lock_released_and_candidate_discarded_when_session_ends(port):
    a = connect(port)
    a.lock("running")
    a.lock("candidate")
    a.edit_config(target="candidate", config=connection_xml("lost"))
    a.close_session()
    with connect(port) as b:
        for _ in range(50):
            try:
                b.lock("running")
                break
            except RPCError:
                time.sleep(0.05)
        b.unlock("running")
        b.lock("candidate")
        b.unlock("candidate")
        assert running_names(b, "candidate") == []


def test_confirmed_commit_rolls_back_on_timeout(port):
    with connect(port) as m:
        m.edit_config(target="running", config=connection_xml("keep"))
        m.edit_config(target="candidate", config=connection_xml("trial"))
        m.commit(confirmed=True, timeout="1")
        assert running_names(m) == ["keep", "trial"]
        deadline = time.monotonic() + 5
        while running_names(m) != ["keep"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running_names(m) == ["keep"]
        assert running_names(m, "candidate") == ["keep"]


def test_confirmed_commit_rollback_keeps_writes_made_after_it(port):
    """The timeout undoes that commit only: a change another session made since stays."""
    with connect(port) as m, connect(port) as other:
        m.edit_config(target="candidate", config=connection_xml("trial"))
        m.commit(confirmed=True, timeout="1")
        other.edit_config(target="running", config=connection_xml("later"))
        assert sorted(running_names(m)) == ["later", "trial"]
        deadline = time.monotonic() + 5
        while "trial" in running_names(m) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running_names(m) == ["later"]


def test_confirming_commit_keeps_the_change(port):
    with connect(port) as m:
        m.edit_config(target="candidate", config=connection_xml("confirmed"))
        m.commit(confirmed=True, timeout="2")
        m.commit()  # the confirming commit
        time.sleep(2.5)
        assert running_names(m) == ["confirmed"]


def test_confirmed_commit_rolls_back_when_session_ends_and_persist_survives(port):
    a = connect(port)
    a.edit_config(target="candidate", config=connection_xml("gone"))
    a.commit(confirmed=True, timeout="60")
    a.close_session()
    with connect(port) as b:
        deadline = time.monotonic() + 5
        while running_names(b) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_names(b) == []
    # persist: the commit outlives the session and another session confirms it with persist-id
    a = connect(port)
    a.edit_config(target="candidate", config=connection_xml("persisted"))
    a.commit(confirmed=True, timeout="60", persist="token-1")
    a.close_session()
    with connect(port) as b:
        time.sleep(0.3)
        assert running_names(b) == ["persisted"]
        with pytest.raises(RPCError) as err:
            b.commit(persist_id="wrong")
        assert err.value.tag == "invalid-value"
        b.commit(persist_id="token-1")
        assert running_names(b) == ["persisted"]


def test_cancel_commit(port):
    with connect(port) as m:
        with pytest.raises(RPCError) as err:
            m.cancel_commit()
        assert err.value.tag == "operation-failed"
        m.edit_config(target="candidate", config=connection_xml("cancelled"))
        m.commit(confirmed=True, timeout="60", persist="p2")
        assert running_names(m) == ["cancelled"]
        m.cancel_commit(persist_id="p2")
        assert running_names(m) == []


def test_commit_of_a_stale_candidate_is_refused(port):
    """A commit never undoes a change to running acknowledged after the candidate was edited."""
    with connect(port) as a, connect(port) as b:
        a.edit_config(target="candidate", config=connection_xml("from-candidate"))
        b.edit_config(target="running", config=connection_xml("direct"))
        with pytest.raises(RPCError) as err:
            a.commit()
        assert err.value.tag == "operation-failed"
        assert err.value.xml.findtext("{*}error-app-tag") == "candidate-stale"
        assert running_names(a) == ["direct"]
        a.discard_changes()
        a.edit_config(target="candidate", config=connection_xml("from-candidate"))
        a.commit()
        assert running_names(b) == ["direct", "from-candidate"]
