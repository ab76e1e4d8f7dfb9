"""Security review checks against a real agent with every face on.

* kubeconfig secrets (bearer token, client certificate and key) never leave the node: not in gNMI Get of
  everything, NETCONF <get>, any CLI show command over SSH, the metrics page, the agent's debug log or the
  audit log -- also when the API server refuses the token;
* the audit log names user, face, address and changed paths for gNMI, NETCONF, the CLI over SSH and the
  local `kubefabric cli` (which speaks gNMI), in the agent log and in the `audit-log` file (mode 0600);
* read-only users are refused on every write path: gNMI Set, every NETCONF write operation, every CLI
  config command over SSH and through `kubefabric cli`, and nothing changes;
* gNMI over TLS accepts TLS 1.2 and 1.3 and refuses TLS 1.1 and 1.0.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request
import warnings

import asyncssh
import grpc
import pytest
import yaml

from agent.cli import parser as cli_parser
from agent.cli.commands import COMMANDS
from tests.agentproc import REPO, USERS, AgentProcess, free_port
from tests.hardening.helpers import BackgroundLoop, Gnmi, wait_for

TOKEN = "kf-hardening-token-3b9f0c1d2e4a5b6c7d8e9f00"
WRONG_TOKEN = "kf-wrong-token-aa11bb22cc33dd44ee55ff66"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A TLS API server (token + client certificate), and an agent with gNMI, NETCONF, CLI SSH, metrics, audit log."""
    from sim.k8s_apiserver import FakeApiServer

    tmp = tmp_path_factory.mktemp("security")
    bg = BackgroundLoop()
    server = FakeApiServer(token=TOKEN, tls=True, pki_dir=tmp / "pki", port=free_port(), bookmark_interval=0.5)
    server.load_scenario("flannel-vxlan", nodes=2)
    server.populate(6)
    bg.run(server.start())
    kubeconfig = server.write_kubeconfig(tmp / "kubeconfig", client_cert=True)
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = TOKEN
    kubeconfig.write_text(yaml.safe_dump(doc))
    wrong = server.write_kubeconfig(tmp / "kubeconfig-wrong", token=WRONG_TOKEN, cluster_name="wrong")
    user = doc["users"][0]["user"]
    secrets = {TOKEN, WRONG_TOKEN, user["client-certificate-data"], user["client-key-data"]}
    for field in ("client-certificate-data", "client-key-data"):
        pem = base64.b64decode(user[field]).decode()
        secrets |= {line for line in pem.splitlines() if len(line) >= 16 and not line.startswith("-----")}
    ports = {"netconf": free_port(), "ssh": free_port(), "metrics": free_port()}
    audit = tmp / "audit.jsonl"
    agent = AgentProcess(tmp, extra_args=[
        "--netconf-addr", f"127.0.0.1:{ports['netconf']}", "--cli-ssh-addr", f"127.0.0.1:{ports['ssh']}",
        "--metrics-addr", f"127.0.0.1:{ports['metrics']}", "--audit-log", str(audit)])
    agent.start()
    agent.ports, agent.audit = ports, audit
    try:
        with Gnmi(agent) as gc:
            gc.set("/k8s/connection[cluster-name=sim]", {"cluster-name": "sim", "kube-config": str(kubeconfig)})
            gc.set("/k8s/connection[cluster-name=wrong]", {"cluster-name": "wrong", "kube-config": str(wrong)})
            wait_for(lambda: gc.container("/k8s/connection[cluster-name=sim]/state").get("status") == "connected",
                     30, what="connected")
            wait_for(lambda: gc.container("/k8s/connection[cluster-name=wrong]/state").get("last-error"), 30,
                     what="the wrong token's error")
        yield agent, secrets
    finally:
        agent.stop()
        bg.run(server.stop())
        bg.close()


def _leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(s[:12] + "..." for s in secrets if s in text)


def _ssh_outputs(port: int, user: str, commands: list[str]) -> dict[str, tuple[int, str]]:
    async def run():
        out = {}
        async with asyncssh.connect("127.0.0.1", port, username=user, password=USERS[user][0],
                                    known_hosts=None) as conn:
            for command in commands:
                result = await conn.run(command)
                out[command] = (result.exit_status, (result.stdout or "") + (result.stderr or ""))
        return out

    return asyncio.run(run())


SHOW_COMMANDS = sorted(n for n, c in COMMANDS.items() if c.kind in ("show", "settings-show", "history"))


def test_kubeconfig_secrets_never_leave_the_node(world):
    agent, secrets = world
    with Gnmi(agent) as gc:
        everything = gc.get_raw("/").decode("utf-8", "replace")
        state = gc.container("/k8s/connection[cluster-name=wrong]/state")
    assert "sim" in everything and "pod-count" in everything
    assert state["status"] != "connected" and state["last-error"]
    from ncclient import manager

    with manager.connect(host="127.0.0.1", port=agent.ports["netconf"], username="admin",
                         password=USERS["admin"][0], hostkey_verify=False, look_for_keys=False,
                         allow_agent=False, timeout=30) as m:
        netconf = m.get().data_xml + m.get_config("running").data_xml
    assert "kube-config" in netconf
    cli = _ssh_outputs(agent.ports["ssh"], "admin", SHOW_COMMANDS + [c + " layout vertical" for c in SHOW_COMMANDS
                                                                     if COMMANDS[c].kind == "show"])
    cli_text = "\n".join(text for _, text in cli.values())
    assert "sim" in cli_text
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.ports['metrics']}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    outputs = {"gNMI Get /": everything, "NETCONF get/get-config": netconf, "CLI over SSH": cli_text,
               "metrics": metrics, "agent log (debug)": agent.log(), "audit log": agent.audit.read_text()}
    found = {face: _leaks(text, secrets) for face, text in outputs.items()}
    assert found == {face: [] for face in outputs}, found


def _netconf(agent, user):
    from ncclient import manager

    return manager.connect(host="127.0.0.1", port=agent.ports["netconf"], username=user, password=USERS[user][0],
                           hostkey_verify=False, look_for_keys=False, allow_agent=False, timeout=30)


K8S_NS = "urn:kubefabric:yang:kubefabric-k8s"
CONN_NS = "urn:kubefabric:yang:kubefabric-connection"


def test_audit_log_names_user_face_address_and_paths(world):
    agent, _ = world
    from agent.cli.engine import Engine
    from agent.cli.gnmi_backend import GnmiBackend

    start = len(agent.audit.read_text().splitlines())
    with Gnmi(agent) as gc:
        gc.set("/kubefabric-connection:connection-stats-settings/max-connections", 4242)
    with _netconf(agent, "admin") as m:
        m.edit_config(target="running", config=f'<config><connection-stats-settings xmlns="{CONN_NS}">'
                                               f'<idle-timeout>77</idle-timeout></connection-stats-settings></config>')
    out = _ssh_outputs(agent.ports["ssh"], "admin", ["k8s-connection-modify cluster-name wrong disable"])
    assert list(out.values())[0][0] == 0, out

    async def local_cli():
        engine = Engine(await GnmiBackend(agent.gnmi_addr, "admin", USERS["admin"][0], insecure=True).connect())
        try:
            return await engine.run("k8s-connection-modify cluster-name wrong enable")
        finally:
            await engine.backend.close()

    assert asyncio.run(local_cli()).ok
    records = [json.loads(line) for line in agent.audit.read_text().splitlines()[start:]]
    by_face = {}
    for r in records:
        by_face.setdefault(r["face"], []).append(r)
    assert set(by_face) == {"gnmi", "netconf", "cli-ssh"}, records
    paths = {r["face"]: [c["path"] for c in r["changes"]] for r in records}
    assert by_face["gnmi"][0]["changes"] == [{"path": "/kubefabric-connection:connection-stats-settings",
                                              "op": "update", "leaves": ["max-connections"]}]
    assert paths["netconf"] == ["/kubefabric-connection:connection-stats-settings"]
    assert paths["cli-ssh"] == ["/kubefabric-k8s:k8s/connection[cluster-name=wrong]"]
    assert len(by_face["gnmi"]) == 2  # the local CLI's write arrives over gNMI
    for r in records:
        assert r["user"] == "admin" and r["ts"] and r["node"] == "leaf1" and r["revision"] >= 0
    for face in ("gnmi", "cli-ssh"):
        assert by_face[face][0]["peer"].startswith("127.0.0.1:"), by_face[face]
    assert by_face["netconf"][0]["peer"].startswith("session "), by_face["netconf"]
    assert stat.S_IMODE(os.stat(agent.audit).st_mode) == 0o600
    log = agent.log()
    for face in ("gnmi", "netconf", "cli-ssh"):
        assert f"config change by admin via {face}" in log


def _config(agent) -> str:
    with Gnmi(agent) as gc:
        return json.dumps(gc.get("/", "CONFIG"), sort_keys=True)


def test_read_only_refused_on_every_write_path(world):
    agent, _ = world
    with Gnmi(agent) as gc:  # an entry for the capture commands to modify and delete (disabled: nothing captured)
        gc.set("/kubefabric-capture:capture/interface[name=mirror9]", {"name": "mirror9", "enable": False})
    before = _config(agent)
    # gNMI Set: update, replace, delete
    with Gnmi(agent, user="viewer") as gc:
        for call in (lambda: gc.set("/k8s/connection[cluster-name=x]", {"cluster-name": "x", "kube-config": "/x"}),
                     lambda: gc.set("/kubefabric-connection:connection-stats-settings", {"enable": True}, "replace"),
                     lambda: gc.delete("/k8s/connection[cluster-name=sim]")):
            with pytest.raises(grpc.RpcError) as exc:
                call()
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # NETCONF: every operation that writes or takes a lock
    from ncclient.operations.rpc import RPCError

    config = f'<config><k8s xmlns="{K8S_NS}"><connection><cluster-name>x</cluster-name>' \
             f'<kube-config>/x</kube-config></connection></k8s></config>'
    with _netconf(agent, "viewer") as m:
        attempts = {
            "edit-config running": lambda: m.edit_config(target="running", config=config),
            "edit-config candidate": lambda: m.edit_config(target="candidate", config=config),
            "copy-config": lambda: m.copy_config(source="running", target="startup"),
            "delete-config": lambda: m.delete_config(target="startup"),
            "lock": lambda: m.lock("running"),
            "unlock": lambda: m.unlock("running"),
            "commit": lambda: m.commit(),
            "discard-changes": lambda: m.discard_changes(),
            "cancel-commit": lambda: m.cancel_commit(),
            "kill-session": lambda: m.kill_session("1"),
        }
        tags = {}
        for name, attempt in attempts.items():
            try:
                attempt()
                tags[name] = "ACCEPTED"
            except RPCError as err:
                tags[name] = err.tag
        assert tags == {name: "access-denied" for name in attempts}, tags
        m.get()  # reading still works
    # CLI config commands, over SSH and through `kubefabric cli` (gNMI)
    commands = ["k8s-connection-create cluster-name x kube-config /x", "k8s-connection-modify cluster-name sim disable",
                "k8s-connection-delete cluster-name sim", "connection-stats-settings-modify max-connections 7",
                "capture-interface-create name x", "capture-interface-modify name mirror9 enable",
                "capture-interface-delete name mirror9", "capture-erspan-modify enable address 127.0.0.1"]
    assert {n for n, c in COMMANDS.items() if c.kind in ("create", "modify", "delete", "settings-modify")} == \
        {c.split()[0] for c in commands}
    for command, (code, text) in _ssh_outputs(agent.ports["ssh"], "viewer", commands).items():
        assert code == 1 and "permission denied" in text.lower(), (command, text)
    env = {**os.environ, "KUBEFABRIC_PASSWORD": USERS["viewer"][0]}
    for command in commands:
        result = subprocess.run([sys.executable, "-m", "agent.main", "cli", "--gnmi-addr", agent.gnmi_addr,
                                 "--insecure", "--username", "viewer", *cli_parser.split(command)],
                                env=env, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert result.returncode == 1 and "may not change configuration" in result.stderr, result.stderr
    assert _config(agent) == before


# -- TLS versions -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory):
    from sim.k8s_apiserver import make_pki

    tmp = tmp_path_factory.mktemp("tls")
    pki = make_pki(tmp / "pki")
    agent = AgentProcess(tmp, insecure=False, extra_args=["--tls-cert", str(pki["server.crt"]),
                                                          "--tls-key", str(pki["server.key"])])
    agent.start()
    yield agent, pki
    agent.stop()


def _handshake(port: int, version: ssl.TLSVersion) -> str:
    warnings.simplefilter("ignore", DeprecationWarning)  # asking for TLS 1.0/1.1 on purpose
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old versions: the server must be the one refusing
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.version()


def _client_can_offer(version: ssl.TLSVersion) -> bool:
    """Whether this Python/OpenSSL can speak `version` at all (checked against a local server of our own)."""
    from sim.k8s_apiserver import make_pki
    import tempfile
    import threading
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        pki = make_pki(Path(d))
        warnings.simplefilter("ignore", DeprecationWarning)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.set_ciphers("ALL:@SECLEVEL=0")
        sctx.minimum_version = sctx.maximum_version = version
        sctx.load_cert_chain(pki["server.crt"], pki["server.key"])
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve():
            try:
                conn, _ = listener.accept()
                with sctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            return _handshake(port, version) is not None
        except (ssl.SSLError, OSError):
            return False
        finally:
            listener.close()
            thread.join(5)


def test_gnmi_tls_accepts_1_2_and_1_3_refuses_older(tls_agent):
    agent, _pki = tls_agent
    assert _handshake(agent.gnmi_port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(agent.gnmi_port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    tried = 0
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        if not _client_can_offer(old):
            continue
        tried += 1
        # gRPC (BoringSSL, TLS 1.2 minimum) ends the handshake: an alert or a plain close, never a session
        with pytest.raises((ssl.SSLError, ConnectionResetError)) as exc:
            _handshake(agent.gnmi_port, old)
        assert isinstance(exc.value, (ssl.SSLEOFError, ConnectionResetError)) or \
            "VERSION" in str(exc.value).upper(), exc.value
    if not tried:
        pytest.skip("this OpenSSL cannot offer TLS 1.1 or 1.0 even at SECLEVEL=0; 1.2 and 1.3 were checked")
