"""The agent's start-up settings: YAML file first, command-line flags on top.

These are process settings (addresses, files, users), not YANG config:
YANG config is what operators change at run time through the faces.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .auth import ROLES, UserEntry


class SettingsError(ValueError):
    """The settings file or flags are unusable; the message says why."""


@dataclass
class Settings:
    """Everything `kubefabric run` needs to start."""

    node_name: str = field(default_factory=socket.gethostname)
    data_dir: Path = Path("/var/lib/kubefabric")
    gnmi_addr: str = "0.0.0.0:9339"
    insecure: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    #: also write every config change as a JSON line to this file (mode 0600); None: the agent log only
    audit_log: str | None = None
    users: list[UserEntry] = field(default_factory=list)
    # later faces and producers; None means "not started"
    netconf_addr: str | None = None
    cli_ssh_addr: str | None = None
    sflow_addr: str | None = None
    sflow_workers: int = 1
    #: capture TCP control packets on these interfaces (replaces the node's capture/interface config)
    capture_interfaces: list[str] = field(default_factory=list)
    #: receive ERSPAN/GRE mirror sessions on this local address (turns the receiver on)
    erspan_addr: str | None = None
    metrics_addr: str | None = None
    web_addr: str | None = None
    etcd: list[str] = field(default_factory=list)
    #: TLS to etcd (https:// endpoints): the CA the members chain to, this agent's client certificate and key
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    #: the name every member certificate carries, when the endpoints are on several hosts
    etcd_server_name: str | None = None
    #: an etcd user (etcd auth) and its password; the password only ever comes from this file
    etcd_user: str | None = None
    etcd_password: str | None = None
    fabric: str | None = None
    role: str = "leaf"
    owner_grace: float = 10.0
    history_retention_days: float = 30.0
    #: cap of the Kubernetes history database (MiB of used pages); 0 for no cap
    history_max_mb: float = 1024.0
    #: gNMI address other fabric members reach this agent at (default: gnmi_addr)
    gnmi_advertise: str | None = None
    #: attachment sources in use (each also needs to be available: lldpd's socket, netlink, --sflow-addr)
    topology_sources: list[str] = field(default_factory=lambda: ["lldp", "netlink", "sflow"])
    #: lldpd's control socket (default: lldpd's own default path when it exists)
    lldp_socket: str | None = None
    #: seconds between two attachment refreshes
    topology_interval: float = 5.0
    #: CA certificate of the other members' gNMI certificates (forwarding); default: tls_client_ca
    fabric_tls_ca: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> "Settings":
        """Read a YAML settings file (keys use dashes or underscores)."""
        settings = cls()
        if path is None:
            return settings
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise SettingsError(f"config file {path} must be a mapping")
        known = {f.name for f in fields(cls)}
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise SettingsError(f"config file {path}: unknown setting {key!r}")
            if name == "users":
                settings.users = parse_users(value)
            elif name == "data_dir":
                settings.data_dir = Path(value)
            elif name == "etcd":
                settings.etcd = split_endpoints(value)
            elif name == "topology_sources":
                settings.topology_sources = split_sources(value)
            elif name == "capture_interfaces":
                settings.capture_interfaces = parse_interfaces(value)
            else:
                setattr(settings, name, value)
        return settings


TOPOLOGY_SOURCES = ("lldp", "netlink", "sflow")


def split_sources(value: object) -> list[str]:
    """Topology sources from a list or a comma-separated string ("none" for none)."""
    names = split_endpoints(value)
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in TOPOLOGY_SOURCES]
    if unknown:
        raise SettingsError(f"unknown topology source {', '.join(unknown)} (known: {', '.join(TOPOLOGY_SOURCES)}, none)")
    return names


def parse_interfaces(value: object) -> list[str]:
    """Interface names from a list or a comma-separated string; each a valid Linux interface name."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value or []]
    for name in names:
        if not name or len(name) > 15 or "/" in name or any(c.isspace() for c in name):
            raise SettingsError(f"capture interface {name!r} is not a valid interface name (1-15 characters, "
                                "no '/' or spaces)")
    return names


def parse_erspan_addr(value: str) -> str:
    """A local IPv4 or IPv6 address (GRE has no port)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        raise SettingsError(f"--erspan-addr {value!r} is not an IP address (GRE has no port: give HOST only)") from None


def split_endpoints(value: object) -> list[str]:
    """etcd endpoints from a list or a comma-separated string."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value or []]


def parse_users(value: object) -> list[UserEntry]:
    """The `users:` list: entries {name, password-hash, role, ssh-keys, certificate-names, groups}."""
    if not isinstance(value, list):
        raise SettingsError("users must be a list of {name, password-hash, role}")
    users = []
    for entry in value:
        if not isinstance(entry, dict) or "name" not in entry:
            raise SettingsError("each user needs at least a name")
        name = str(entry["name"])
        pw_hash = str(entry.get("password-hash", entry.get("password_hash", "")))
        role = str(entry.get("role", "read-only"))
        if role not in ROLES:
            raise SettingsError(f"user {name!r}: role must be one of {', '.join(ROLES)}")
        if pw_hash and not pw_hash.startswith("scrypt$"):
            raise SettingsError(f"user {name!r}: password-hash must come from 'kubefabric passwd'")
        keys = entry.get("ssh-keys", entry.get("ssh_keys", [])) or []
        cert_names = entry.get("certificate-names", entry.get("certificate_names", [])) or []
        groups = entry.get("groups", []) or []
        if not isinstance(cert_names, list) or not isinstance(groups, list):
            raise SettingsError(f"user {name!r}: certificate-names and groups must be lists")
        users.append(UserEntry(name, pw_hash, role, tuple(str(k) for k in keys),
                               tuple(str(n) for n in cert_names), tuple(str(g) for g in groups)))
    return users


def split_addr(addr: str, default_port: int) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT', ':PORT' or 'HOST' -> (host, port)."""
    host, port = addr, default_port
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif addr.count(":") == 1:
        host, _, p = addr.partition(":")
        port = int(p)
    return host or "0.0.0.0", port
