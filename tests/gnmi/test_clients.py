"""Real clients over mutual TLS: certificate identity (issue 13 item 6), cisco-gnmi's command line, and
STREAM subscriptions held 60 s by each client, every sample and heartbeat received.

cisco-gnmi (PyPI, a command line over its own gnmi.proto 0.7 stubs, last released 2022) is the second
client.  It is old enough to need protobuf's pure-Python implementation
(PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python, set only for its processes), and with protobuf 7 it
cannot print a response whose path has list keys (its 2019-style descriptors make PathElem.key a
repeated field, and text_format fails on it), so its paths here are key-less: /fabric/sync-state and
/connection-stats-settings.  It reads the username and password from stdin, as a person types them.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from pygnmi.client import gNMIclient, gNMIException

from agent.gnmi.paths import parse
from agent.gnmi_proto import gnmi_pb2, gnmi_pb2_grpc
from tests.agentproc import USERS, AgentProcess, users_config

from .certs import make_certs

SAMPLE_S, HEARTBEAT_S, HOLD_S = 1, 5, 60


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("pki"), {
        "admin": [],                                   # CN = a user name
        "collector-1": ["collector-1.telemetry.example"],  # mapped by certificate-names to viewer
        "stranger": [],                                # names no user
    })


@pytest.fixture(scope="module")
def mtls_agent(tmp_path_factory, certs):
    users = [dict(u) for u in users_config()]
    for u in users:
        if u["name"] == "viewer":
            u["certificate-names"] = ["collector-1.telemetry.example"]
    proc = AgentProcess(tmp_path_factory.mktemp("mtls"), insecure=False, settings={"users": users}, extra_args=[
        "--tls-cert", str(certs["server"]), "--tls-key", str(certs["server-key"]),
        "--tls-client-ca", str(certs["ca"])]).start()
    yield proc
    proc.kill()


def _client(agent, certs, cn: str, user: str = "", password: str = "") -> gNMIclient:
    return gNMIclient(target=("127.0.0.1", agent.gnmi_port), username=user, password=password, insecure=False,
                      path_root=str(certs["ca"]), path_cert=str(certs[cn]), path_key=str(certs[f"{cn}-key"]),
                      gnmi_timeout=10)


# -- 6: certificate identity --------------------------------------------------------------------------------------
def test_client_certificate_names_the_user_without_a_password(mtls_agent, certs):
    with _client(mtls_agent, certs, "admin") as gc:  # CN admin: network-admin, no password
        gc.set(update=[("/k8s/connection[cluster-name=cert]", {"kube-config": "/k/cert"})], encoding="json_ietf")
        assert gc.get(path=["/k8s/connection[cluster-name=cert]/kube-config"], encoding="json_ietf")
    with _client(mtls_agent, certs, "collector-1") as gc:  # a SAN mapped to viewer: reads, never writes
        assert gc.capabilities()["gnmi_version"] == "0.10.0"
        stream = gc.subscribe2(subscribe={"subscription": [{"path": "/k8s/connection"}], "mode": "once",
                                          "encoding": "json_ietf"})
        assert any("sync_response" in r for r in stream)
        with pytest.raises(gNMIException) as err:
            gc.set(update=[("/k8s/connection[cluster-name=x]", {"kube-config": "/k/x"})], encoding="json_ietf")
        assert "viewer" in str(err.value)
    with pytest.raises(gNMIException) as err:  # a verified certificate that names no user
        with _client(mtls_agent, certs, "stranger") as gc:
            gc.capabilities()
    assert "names no configured user" in str(err.value) or "UNAUTHENTICATED" in str(err.value)
    # a certificate is one user: claiming another name in metadata is refused
    channel = grpc.secure_channel(f"127.0.0.1:{mtls_agent.gnmi_port}", grpc.ssl_channel_credentials(
        certs["ca"].read_bytes(), certs["admin-key"].read_bytes(), certs["admin"].read_bytes()))
    with pytest.raises(grpc.RpcError) as err:
        gnmi_pb2_grpc.gNMIStub(channel).Get(gnmi_pb2.GetRequest(path=[parse("/fabric")]),
                                            metadata=[("username", "viewer")])
    channel.close()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with _client(mtls_agent, certs, "admin", "admin", USERS["admin"][0]) as gc:  # passwords still work
        gc.set(delete=["/k8s/connection"])


def test_username_without_password_or_certificate_is_refused(tmp_path):
    proc = AgentProcess(tmp_path).start()  # plaintext: no certificate can be verified
    try:
        channel = grpc.insecure_channel(proc.gnmi_addr)
        with pytest.raises(grpc.RpcError) as err:
            gnmi_pb2_grpc.gNMIStub(channel).Get(gnmi_pb2.GetRequest(path=[parse("/fabric")]),
                                                metadata=[("username", "admin")])
        channel.close()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.kill()


# -- cisco-gnmi, a command-line client, over mutual TLS ------------------------------------------------------------
def _cisco_gnmi(agent, certs, rpc: str, *args: str, user: str = "admin", cn: str = "admin",
                os_name: str = "None", output: Path | None = None) -> subprocess.Popen:
    """cisco-gnmi RPC; its output piped (read with communicate) or, for long streams, written to `output`."""
    exe = shutil.which("cisco-gnmi", path=str(Path(sys.executable).parent))
    assert exe, "cisco-gnmi is in the test extra"
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    proc = subprocess.Popen(
        [exe, rpc, f"127.0.0.1:{agent.gnmi_port}", "-os", os_name, "-root_certificates", str(certs["ca"]),
         "-private_key", str(certs[f"{cn}-key"]), "-certificate_chain", str(certs[cn]), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE if output is None else output.open("w"),
        stderr=subprocess.PIPE if output is None else subprocess.STDOUT, text=True, env=env,
        start_new_session=True)  # no controlling terminal: getpass reads the password from stdin
    proc.stdin.write(f"{user}\n{USERS[user][0]}\n")
    proc.stdin.flush()
    return proc


def test_cisco_gnmi_command_line_over_mutual_tls(mtls_agent, certs):
    caps = _cisco_gnmi(mtls_agent, certs, "capabilities")
    out, err = caps.communicate(timeout=60)
    assert caps.returncode == 0, err
    assert "0.10.0" in out + err and "kubefabric-k8s" in out + err
    # its IOS XR wrapper (the one with `get`) sends the module as the origin: kubefabric-fabric:/fabric/sync-state
    get = _cisco_gnmi(mtls_agent, certs, "get", "-xpath", "kubefabric-fabric:/fabric/sync-state", "-encoding",
                      "JSON_IETF", os_name="IOS XR")
    out, err = get.communicate(timeout=60)
    assert get.returncode == 0 and "in-sync" in out + err, err


# -- the proof: STREAM subscriptions held 60 s by every client -----------------------------------------------------
def _pygnmi_stream(agent, certs, call: str, seen: dict, stop: threading.Event) -> None:
    request = {"subscription": [
        {"path": "/fabric/node", "mode": "sample", "sample_interval": SAMPLE_S * 10**9},
        {"path": "/connection-stats-settings", "mode": "on_change", "heartbeat_interval": HEARTBEAT_S * 10**9},
    ], "mode": "stream", "encoding": "json_ietf"}
    try:
        with _client(agent, certs, "collector-1") as gc:
            if call == "subscribe":
                stream = gc.subscribe(subscribe=request)
                for response in stream:
                    if stop.is_set():
                        stream.cancel()
                        break
                    if response.HasField("update"):
                        for u in response.update.update:
                            seen.setdefault(u.path.elem[0].name, []).append(response.update.timestamp)
            else:
                sub = gc.subscribe2(subscribe=request)
                while not stop.is_set():
                    try:
                        got = sub.get_update(timeout=1)
                    except TimeoutError:
                        continue
                    for u in (got.get("update") or {}).get("update") or []:
                        seen.setdefault(u["path"].split("/")[0].split("[")[0], []).append(got["update"]["timestamp"])
                sub.close()
    except Exception as exc:  # noqa: BLE001 - reported by the test
        seen["error"] = [repr(exc)]


@pytest.mark.slow
def test_streams_held_60s_by_every_client_get_every_sample_and_heartbeat(mtls_agent, certs, tmp_path):
    # cisco-gnmi's command line samples; it cannot ask for heartbeats (its -heartbeat_interval only reaches
    # subscriptions given as dicts, which its command line never builds), so pygnmi's two calls cover those
    dumps = {"cisco-sample": tmp_path / "cisco-sample.txt"}
    cisco = [
        _cisco_gnmi(mtls_agent, certs, "subscribe", "-xpath", "/fabric/sync-state", "-mode", "SAMPLE", "-interval",
                    str(SAMPLE_S), "-encoding", "JSON_IETF", "-dump_file", str(dumps["cisco-sample"]),
                    user="viewer", cn="collector-1", output=tmp_path / "cisco-sample.log"),
    ]
    stop = threading.Event()
    seen = {"subscribe": {}, "subscribe2": {}}
    threads = [threading.Thread(target=_pygnmi_stream, args=(mtls_agent, certs, call, seen[call], stop))
               for call in seen]
    for t in threads:
        t.start()
    time.sleep(HOLD_S + 1)  # the hold itself: nothing to poll for, every stream must simply keep going
    stop.set()
    for t in threads:
        t.join(timeout=15)
    for proc in cisco:
        os.killpg(proc.pid, signal.SIGINT)  # what a person does: ^C
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # grpc's blocking read may hold the ^C; what it wrote is in the dump
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    expected_samples = HOLD_S // SAMPLE_S
    expected_beats = HOLD_S // HEARTBEAT_S
    for call, got in seen.items():
        assert "error" not in got, (call, got["error"])
        _check(call, got.get("node") or got.get("fabric", []), expected_samples, SAMPLE_S)
        _check(call, got.get("connection-stats-settings", []), expected_beats, HEARTBEAT_S)
    for name, path in dumps.items():
        stamps = [int(t) for t in re.findall(r"^\s*timestamp: (\d+)", path.read_text(), re.M)]
        _check(name, stamps, expected_samples, SAMPLE_S)


def _check(who: str, stamps: list[int], expected: int, interval: float) -> None:
    """Every sample/heartbeat of the hold arrived: the count and no gap longer than one interval and a half.

    The first notification is the initial snapshot, stamped when its data last changed; gaps count from it on.
    """
    stamps = sorted(set(stamps))
    assert len(stamps) >= expected - 1, (who, len(stamps), expected)
    stamps = stamps[1:]
    gaps = [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:])]
    assert gaps and max(gaps) < interval * 1.5 + 0.5, (who, max(gaps) if gaps else None)
