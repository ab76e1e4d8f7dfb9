"""Running config: validation against the YANG models and the flat view.

yangson (pure Python, full XPath for `must`, max-elements, key
uniqueness, types and patterns) validates every candidate as a whole; see
docs/design.md for why yangson rather than libyang.  A candidate that fails
raises `ConfigError` and the running config is untouched.
"""
from __future__ import annotations

import copy
import re
import time

import yangson.exceptions as yerr
from yangson.enumerations import ContentType, ValidationScope

from ..changefeed import Change
from ..errors import ConfigError
from ..schema import NodeInfo, Schema
from .tree import flatten

# yangson's tags -> (RFC 6241 error-tag, RFC 7950 error-app-tag)
_SEMANTIC_TAGS = {
    "too-many-elements": ("operation-failed", "too-many-elements"),
    "too-few-elements": ("operation-failed", "too-few-elements"),
    "must-violation": ("operation-failed", "must-violation"),
    "non-unique-key": ("data-exists", "data-not-unique"),
    "data-not-unique": ("operation-failed", "data-not-unique"),
    "instance-required": ("data-missing", "instance-required"),
    "missing-choice": ("data-missing", "missing-choice"),
}


def _error_path(exc: Exception) -> str:
    text = str(exc)
    match = re.match(r"\{([^}]*)\}", text)
    route = match.group(1) if match else text.split(" ")[0]
    # yangson writes list entries as name=value in raw errors; keep XPath form
    return route


def _message(exc: Exception) -> str:
    text = str(exc)
    return re.sub(r"^\{[^}]*\}\s*", "", text)


def to_config_error(exc: yerr.YangsonException) -> ConfigError:
    """Translate a yangson exception into the error every face reports."""
    path = _error_path(exc)
    tag = getattr(exc, "tag", None)
    message = getattr(exc, "message", None)
    if isinstance(exc, yerr.RawMemberError):
        return ConfigError("unknown-element", f"unknown element {path}", path=path, error_type="application")
    if isinstance(exc, yerr.RawTypeError):
        return ConfigError("invalid-value", _message(exc) or "wrong type", path=path)
    if isinstance(exc, yerr.YangTypeError):
        return ConfigError("invalid-value", f"invalid value: {message or tag}", path=path)
    if isinstance(exc, yerr.SemanticError):
        etag, app = _SEMANTIC_TAGS.get(tag or "", ("operation-failed", tag or ""))
        if tag == "too-many-elements":
            message = message or "too many list entries (a fabric holds at most four Kubernetes connections)"
        return ConfigError(etag, message or f"{tag} at {path}", path=path, app_tag=app)
    if isinstance(exc, yerr.SchemaError):
        if tag == "missing-data":
            return ConfigError("data-missing", message or "mandatory node missing", path=path, app_tag="missing-element")
        if tag and tag.endswith("member-not-allowed"):
            member_path = f"{path.rstrip('/')}/{message}"
            return ConfigError("invalid-value", f"{message} is state data (config false), not configuration", path=member_path)
        return ConfigError("invalid-value", f"{tag}: {message}", path=path)
    return ConfigError("invalid-value", str(exc), path=path)


class ConfigStore:
    """The running config tree, its defaults-filled view and flat nodes."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self.raw: dict = {}
        self.full: dict = {}
        self.flat: dict[str, dict[tuple, dict]] = {}
        self.times: dict[str, dict[tuple, int]] = {}
        self._set({}, time.time_ns())

    def validate(self, candidate: dict) -> dict:
        """Validate a candidate tree; returns it with defaults added.

        Raises ConfigError (never a yangson exception) when invalid.
        """
        if not isinstance(candidate, dict):
            raise ConfigError("malformed-message", "config must be a JSON object")
        try:
            inst = self._schema.model.from_raw(candidate)
            inst.validate(ValidationScope.all, ContentType.config)
            return _config_only(inst.add_defaults().raw_value(), self._schema)
        except yerr.YangsonException as exc:
            raise to_config_error(exc) from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError("invalid-value", f"cannot parse config: {exc}") from None

    def replace(self, candidate: dict, full: dict | None = None, ts: int | None = None) -> list[Change]:
        """Make `candidate` the running config; returns the changes it made.

        `full` is the validated tree with defaults (pass validate()'s result
        to avoid validating twice).
        """
        ts = ts or time.time_ns()
        if full is None:
            full = self.validate(candidate)
        old_flat, old_times = self.flat, self.times
        self._set(copy.deepcopy(candidate), ts, full)
        changes = diff_flat(old_flat, self.flat, ts)
        changed = {(c.path, c.key) for c in changes}
        for path, table in self.flat.items():
            for key in table:
                if (path, key) not in changed:
                    self.times[path][key] = old_times[path][key]
        return changes

    def _set(self, raw: dict, ts: int, full: dict | None = None) -> None:
        self.raw = raw
        self.full = full if full is not None else self.validate(raw)
        self.flat = flatten(self.full, self._schema, config_only=True)
        self.times = {p: {k: ts for k in t} for p, t in self.flat.items()}

    def timestamp(self, path: str, key: tuple = ()) -> int:
        """When the node last changed (ns)."""
        return self.times.get(path, {}).get(key, 0)


def diff_flat(old_flat: dict, new_flat: dict, ts: int) -> list[Change]:
    """The changes that turn one flat node index into another."""
    changes = []
    for path, table in new_flat.items():
        old_table = old_flat.get(path, {})
        for key, values in table.items():
            old = old_table.get(key)
            if old is None:
                changes.append(Change(path, key, dict(values), (), ts))
                continue
            changed = {k: v for k, v in values.items() if old.get(k, _MISSING) != v}
            removed = tuple(k for k in old if k not in values)
            if changed or removed:
                changes.append(Change(path, key, changed, removed, ts))
    for path, old_table in old_flat.items():
        table = new_flat.get(path, {})
        for key in old_table:
            if key not in table:
                changes.append(Change(path, key, None, (), ts))
    return changes


def _config_only(tree: dict, schema: Schema) -> dict:
    """Drop the empty config-false containers yangson's add_defaults creates."""

    def strip(body: dict, info: NodeInfo) -> dict:
        out = {}
        for name, value in body.items():
            if name in info.leaves:
                if info.leaves[name].config:
                    out[name] = value
                continue
            child = info.children.get(name)
            if child is None or not child.config:
                continue
            if child.kind == "list":
                out[name] = [strip(e, child) for e in value]
            else:
                out[name] = strip(value, child)
        return out

    return {name: strip(body, schema.top[name]) for name, body in tree.items() if name in schema.top and schema.top[name].config}


_MISSING = object()
