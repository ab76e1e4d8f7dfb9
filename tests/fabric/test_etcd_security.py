"""The fabric store against etcd as production runs it: TLS with client certificates, etcd authentication
with a role per fabric prefix (set up with the etcdctl commands of docs/operations.md), and what an agent
says and does when its identity is not good enough: expired or foreign certificate, a user without rights
on the prefix, rights taken away mid-run.  In-process stores (Datastore + EtcdFabricStore) on a real
three-member etcd serving TLS."""
from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from agent.demo.pki import CertificateAuthority
from core.datastore import UnavailableError
from tests.fabric.conftest import FABRIC, TOKEN_TTL, add_conn, conn_names, eventually, grant_fabric

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def tls(etcd_tls_cluster):
    return etcd_tls_cluster


@pytest.fixture
def fabric():
    return "s" + uuid.uuid4().hex[:8]


@pytest.fixture
async def nodes(tls, tmp_path):
    """start(name, fabric, security) -> started Datastore; all stopped at the end."""
    from core.datastore import Datastore
    from fabric_sync.etcd import EtcdFabricStore

    started = []

    async def start(name: str, fabric: str, security, **kwargs):
        kwargs.setdefault("connect_timeout", 4.0)
        store = EtcdFabricStore(tls.endpoints, fabric, name, address="127.0.0.1:1", role="leaf",
                                data_dir=tmp_path / name, security=security, **kwargs)
        ds = Datastore(name, tmp_path / name, store)
        await ds.start()
        started.append(ds)
        return ds

    yield start
    for ds in reversed(started):
        try:
            await asyncio.wait_for(ds.stop(), 10)
        except Exception:
            pass


def sync_state(ds) -> str:
    return ds.read_node(FABRIC)["sync-state"]


async def test_tls_with_certificate_cn_users_replicates_and_logs_the_identity(tls, nodes, fabric, caplog):
    """Each agent is the etcd user named by its certificate's CN, with readwrite on its fabric's prefix only."""
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    a_cert, b_cert = tls.client_cert(f"{fabric}-a"), tls.client_cert(f"{fabric}-b")
    grant_fabric(tls, fabric, f"{fabric}-a")
    grant_fabric(tls, fabric, f"{fabric}-b")
    a = await nodes("A", fabric, tls.security(a_cert))
    b = await nodes("B", fabric, tls.security(b_cert))
    assert sync_state(a) == sync_state(b) == "in-sync"
    await a.propose(add_conn("k1"), user="admin", face="test")
    await eventually(lambda: "k1" in conn_names(b), timeout=5)
    assert f"as client certificate CN={fabric}-a issued by CN=test-etcd CA, valid until" in caplog.text
    # least privilege: the same certificate reads nothing outside its fabric's prefix
    out = tls.etcdctl("get", "--prefix", f"/kubefabric/{fabric}/", user_cert=a_cert)
    assert f"/kubefabric/{fabric}/config" in out
    other = "o" + uuid.uuid4().hex[:8]
    grant_fabric(tls, other, f"{other}-x")
    tls.etcdctl("put", f"/kubefabric/{other}/config", "{}", user_cert=tls.client_cert(f"{other}-x"))
    with pytest.raises(RuntimeError, match="permission denied"):
        tls.etcdctl("get", "--prefix", f"/kubefabric/{other}/", user_cert=a_cert)
    with pytest.raises(RuntimeError, match="permission denied"):
        tls.etcdctl("put", "/elsewhere", "x", user_cert=a_cert)


async def test_password_user_token_expires_and_is_renewed(tls, nodes, fabric, caplog):
    """--etcd-user with a password: etcd's token expires after TOKEN_TTL idle seconds; the agent
    authenticates again and neither goes stale nor fails a write."""
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    user = f"{fabric}-pw"
    grant_fabric(tls, fabric, user, password="Pw-" + fabric)
    a = await nodes("A", fabric, tls.security(tls.client_cert(user), user=user, password="Pw-" + fabric))
    grant_fabric(tls, fabric, f"{fabric}-b")
    b = await nodes("B", fabric, tls.security(tls.client_cert(f"{fabric}-b")))
    states = set()
    for _ in range(int((TOKEN_TTL * 2 + 2) / 0.1)):  # idle writes: longer than two token lifetimes
        states.add(sync_state(a))
        await asyncio.sleep(0.1)
    assert states == {"in-sync"}
    await a.propose(add_conn("after-idle"), user="admin", face="test")
    await eventually(lambda: "after-idle" in conn_names(b), timeout=5)
    assert "etcd token of user" in caplog.text and "authenticating again" in caplog.text
    assert f"etcd user '{user}' (password from the settings file)" in caplog.text


async def test_certificate_from_another_ca_is_a_clear_stale_state(tls, nodes, fabric, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    rogue = CertificateAuthority(tmp_path / "rogue", "rogue").issue("leaf", f"{fabric}-a")
    grant_fabric(tls, fabric, f"{fabric}-a")
    a = await nodes("A", fabric, tls.security(rogue), connect_timeout=2.0)
    assert sync_state(a) == "stale"
    assert "TLS with etcd failed" in a.fabric.sync_error, a.fabric.sync_error
    assert "TLS with etcd failed" in caplog.text
    before = a.config.raw
    with pytest.raises(UnavailableError) as refused:
        await a.propose(add_conn("k1"), user="admin", face="test")
    assert refused.value.grpc_code_name == "UNAVAILABLE"
    assert a.config.raw == before  # nothing half-applied


async def test_members_not_signed_by_our_ca_are_not_trusted(tls, nodes, fabric, tmp_path):
    from fabric_sync.security import EtcdSecurity

    other = CertificateAuthority(tmp_path / "other", "other")
    good = tls.client_cert(f"{fabric}-a")
    a = await nodes("A", fabric, EtcdSecurity(ca=str(other.ca_path), cert=str(good.cert), key=str(good.key),
                                               server_name="etcd.kubefabric.test"), connect_timeout=2.0)
    assert sync_state(a) == "stale"
    assert "TLS with etcd failed" in a.fabric.sync_error, a.fabric.sync_error


async def test_expired_certificate_is_named_at_start(tls, nodes, fabric, caplog):
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    grant_fabric(tls, fabric, f"{fabric}-a")
    a = await nodes("A", fabric, tls.security(tls.client_cert(f"{fabric}-a", expired=True)), connect_timeout=2.0)
    assert sync_state(a) == "stale"
    assert "has expired: etcd will refuse it" in caplog.text
    assert "EXPIRED until" in caplog.text
    with pytest.raises(UnavailableError):
        await a.propose(add_conn("k1"), user="admin", face="test")


async def test_user_without_rights_on_the_prefix_keeps_reads_and_refuses_writes(tls, nodes, fabric, caplog):
    """The agent's user holds the role of another fabric: etcd refuses; the agent says so, stays stale,
    serves reads, writes get UNAVAILABLE naming the refusal, and nothing reaches the datastore."""
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    other = "o" + uuid.uuid4().hex[:8]
    grant_fabric(tls, other, f"{fabric}-wrong")
    a = await nodes("A", fabric, tls.security(tls.client_cert(f"{fabric}-wrong")), connect_timeout=2.0)
    assert sync_state(a) == "stale"
    assert "permission denied" in a.fabric.sync_error
    before = a.config.raw
    with pytest.raises(UnavailableError) as refused:
        await a.propose(add_conn("k1"), user="admin", face="test")
    assert "permission denied" in refused.value.message
    assert a.config.raw == before
    assert a.read_node(FABRIC) is not None  # reads answered


async def test_rights_taken_away_mid_run_then_given_back(tls, nodes, fabric, caplog):
    caplog.set_level(logging.INFO, logger="kubefabric.fabric")
    user = f"{fabric}-mid"
    grant_fabric(tls, fabric, user)
    grant_fabric(tls, fabric, f"{fabric}-b")
    a = await nodes("A", fabric, tls.security(tls.client_cert(user)))
    b = await nodes("B", fabric, tls.security(tls.client_cert(f"{fabric}-b")))
    await a.propose(add_conn("k1"), user="admin", face="test")
    await eventually(lambda: "k1" in conn_names(b), timeout=5)
    tls.etcdctl("user", "revoke-role", user, f"kubefabric-{fabric}")
    with pytest.raises(UnavailableError) as refused:
        await a.propose(add_conn("k2"), user="admin", face="test")
    assert "permission denied" in refused.value.message
    assert conn_names(a) == {"k1"}  # reads still served, nothing half-applied
    await eventually(lambda: sync_state(a) == "stale", timeout=10)
    assert "etcd refused this agent's identity" in caplog.text
    await b.propose(add_conn("from-b"), user="admin", face="test")  # the fabric goes on without A's rights
    tls.etcdctl("user", "grant-role", user, f"kubefabric-{fabric}")
    await eventually(lambda: sync_state(a) == "in-sync", timeout=15)
    await eventually(lambda: conn_names(a) == {"k1", "from-b"}, timeout=10)
    await a.propose(add_conn("k3"), user="admin", face="test")
    await eventually(lambda: "k3" in conn_names(b), timeout=5)
