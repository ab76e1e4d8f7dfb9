"""`<rpc-error>` as RFC 6241 Appendix A defines it."""
from __future__ import annotations

import re

from lxml import etree

from core.errors import ConfigError

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
_B = "{%s}" % BASE_NS


class RpcError(Exception):
    """One rpc-error: error-type, error-tag, error-app-tag, error-path, error-message, error-info."""

    def __init__(
        self,
        tag: str,
        message: str = "",
        *,
        type: str = "application",  # noqa: A002  (RFC name)
        app_tag: str = "",
        path: str = "",
        path_ns: dict[str, str] | None = None,
        info: dict[str, str] | None = None,
        severity: str = "error",
    ) -> None:
        super().__init__(message or tag)
        self.tag = tag
        self.message = message
        self.type = type
        self.app_tag = app_tag
        self.path = path
        self.path_ns = path_ns or {}
        self.info = info or {}
        self.severity = severity

    def element(self) -> etree._Element:
        """The `<rpc-error>` element."""
        err = etree.Element(_B + "rpc-error", nsmap={None: BASE_NS})
        etree.SubElement(err, _B + "error-type").text = self.type
        etree.SubElement(err, _B + "error-tag").text = self.tag
        etree.SubElement(err, _B + "error-severity").text = self.severity
        if self.app_tag:
            etree.SubElement(err, _B + "error-app-tag").text = self.app_tag
        if self.path:
            path = etree.SubElement(err, _B + "error-path", nsmap=self.path_ns or None)
            path.text = self.path
        if self.message:
            msg = etree.SubElement(err, _B + "error-message")
            msg.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
            msg.text = self.message
        if self.info:
            info = etree.SubElement(err, _B + "error-info")
            for name, value in self.info.items():
                etree.SubElement(info, _B + name).text = str(value)
        return err

    def __repr__(self) -> str:
        return f"RpcError({self.type}/{self.tag}/{self.app_tag}: {self.message} @ {self.path})"


def from_config_error(exc: ConfigError, schema) -> RpcError:
    """The NETCONF form of a refused config change (path rewritten to prefixed XPath)."""
    path, ns = xpath_from_datastore_path(exc.path, schema) if exc.path else ("", {})
    return RpcError(
        exc.error_tag, exc.message, type=exc.error_type or "application", app_tag=exc.app_tag, path=path, path_ns=ns
    )


_STEP = re.compile(r"([^/\[=]+)(?:=([^/]*))?((?:\[[^\]]*\])*)")


def xpath_from_datastore_path(path: str, schema) -> tuple[str, dict[str, str]]:
    """'/kubefabric-k8s:k8s/connection[cluster-name="c1"]/kube-config' -> prefixed XPath and its namespaces.

    Also accepts yangson's 'connection=c1' form.  Unknown shapes are returned as given.
    """
    if not path.startswith("/"):
        return path, {}
    out, ns, info, module = [], {}, None, None
    for raw in _split_steps(path):
        m = _STEP.fullmatch(raw)
        if m is None:
            return path, {}
        name, eq_key, preds = m.groups()
        if ":" in name:
            module, name = name.split(":", 1)
            info = schema.top.get(f"{module}:{name}")
        elif info is not None:
            info = info.children.get(name) if name in info.children else None
        mod = schema.module(module) if module else None
        if mod is None:
            return path, {}
        prefix = mod.prefix
        ns[prefix] = mod.namespace
        step = f"{prefix}:{name}"
        if eq_key is not None and info is not None and info.own_keys:
            values = eq_key.split(",")
            preds = "".join(f"[{k}='{v}']" for k, v in zip(info.own_keys, values))
        if preds:
            preds = re.sub(r"\[([\w.-]+)=", lambda p: f"[{prefix}:{p.group(1)}=", preds).replace('"', "'")
        out.append(step + preds)
    return "/" + "/".join(out), ns


def _split_steps(path: str) -> list[str]:
    steps, depth, cur = [], 0, ""
    for ch in path[1:]:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "/" and depth == 0:
            steps.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        steps.append(cur)
    return steps
