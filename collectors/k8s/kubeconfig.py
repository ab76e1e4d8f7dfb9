"""Kubeconfig -> an authenticated kubernetes_asyncio ApiClient, with errors safe to show.

The client library reads the file (bearer token, token file, client
certificate and key, CA, exec plugins) and writes inline certificate data
to private temp files under ``temp_dir``.  Everything that could carry a
credential is collected in :attr:`KubeClient.secrets` so
:meth:`KubeClient.redact` can scrub it from any message before it reaches
a state leaf or a log line; our own messages never quote file content
(a YAML error would print the offending line, which may be a token).
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio.config import kube_config
from kubernetes_asyncio.config.config_exception import ConfigException

__all__ = ["KubeconfigError", "KubeClient", "open_client", "redact"]

_SECRET_KEYS = ("token", "client-key-data", "client-certificate-data", "password", "username")
_SECRET_FILE_KEYS = ("tokenFile", "client-key")


class KubeconfigError(Exception):
    """The kubeconfig cannot be used; the message is safe to show (no credentials)."""


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """Replace every secret (and its base64 form) in ``text`` with ``<redacted>``."""
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "<redacted>")
    return text


@dataclass
class KubeClient:
    """An ApiClient bound to one cluster."""

    api: k8s_client.ApiClient
    server: str
    context: str
    auth: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def redact(self, text: str) -> str:
        return redact(str(text), self.secrets)

    async def close(self) -> None:
        await self.api.close()


def _secrets_of(doc: dict, base: Path) -> list[str]:
    found: list[str] = []
    for entry in doc.get("users") or []:
        user = (entry or {}).get("user") or {}
        for key in _SECRET_KEYS:
            value = user.get(key)
            if isinstance(value, str) and value:
                found.append(value)
                if key.endswith("-data"):
                    try:
                        found.extend(line for line in base64.b64decode(value).decode("utf-8", "replace").splitlines()
                                     if len(line) >= 16 and not line.startswith("-----"))
                    except (ValueError, TypeError):
                        pass
        for key in _SECRET_FILE_KEYS:
            value = user.get(key)
            if isinstance(value, str) and value:
                try:
                    content = (base / value).read_text(errors="replace")
                except OSError:
                    continue
                found.append(content.strip())
                found.extend(line for line in content.splitlines() if len(line) >= 16 and not line.startswith("-----"))
    return found


async def open_client(path: str | os.PathLike, temp_dir: Path | None = None, context: str | None = None,
                      pool_size: int = 32) -> KubeClient:
    """Load ``path`` and return a client; raises :class:`KubeconfigError` with a safe message."""
    path = Path(path)
    if not path.is_absolute():
        raise KubeconfigError(f"kube-config {path}: must be an absolute path")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KubeconfigError(f"kube-config {path}: file not found") from None
    except PermissionError:
        raise KubeconfigError(f"kube-config {path}: permission denied") from None
    except OSError as exc:
        raise KubeconfigError(f"kube-config {path}: cannot read ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigError(f"kube-config {path}: not valid YAML{where}") from None
    if not isinstance(doc, dict) or not doc.get("clusters") or not doc.get("contexts"):
        raise KubeconfigError(f"kube-config {path}: no clusters or contexts defined")
    secrets = _secrets_of(doc, path.parent)

    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(temp_dir, 0o700)
    cfg = type.__call__(k8s_client.Configuration)
    try:
        loader = await kube_config.load_kube_config(
            config_file=str(path), context=context, client_configuration=cfg,
            persist_config=False, temp_file_path=str(temp_dir) if temp_dir is not None else None)
    except (ConfigException, ValueError, KeyError, TypeError, OSError) as exc:
        raise KubeconfigError(f"kube-config {path}: {redact(str(exc), secrets)}") from None
    except Exception as exc:  # exec plugins and auth providers raise anything
        raise KubeconfigError(f"kube-config {path}: cannot load credentials ({type(exc).__name__})") from None
    if not cfg.host or cfg.host in ("http://localhost", "http://localhost/"):
        raise KubeconfigError(f"kube-config {path}: the current context has no cluster server URL")
    token = cfg.api_key.get("BearerToken") if cfg.api_key else None
    if token:
        secrets.append(str(token).split(" ", 1)[-1])
    if token:
        auth = "bearer-token" if str(token).startswith("Bearer") else "basic"
    elif cfg.cert_file:
        auth = "client-certificate"
    else:
        auth = "none"
    cfg.connection_pool_maxsize = pool_size
    cfg.debug = False
    api = k8s_client.ApiClient(configuration=cfg)
    api.user_agent = "kubefabric/0.1 (kubernetes_asyncio)"
    ctx = ""
    try:
        ctx = str((loader.current_context or {}).get("name") or "")
    except Exception:
        pass
    return KubeClient(api=api, server=cfg.host, context=ctx, auth=auth, secrets=tuple(s for s in secrets if s))
