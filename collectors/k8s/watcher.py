"""Generic list-then-watch loop over one Kubernetes resource (a small reflector).

We use kubernetes_asyncio's ApiClient for everything that touches the
wire (kubeconfig auth with token refresh, TLS, the aiohttp pool, headers)
through :meth:`ApiClient.call_api`, but read the JSON ourselves instead of
the generated models and the ``Watch`` helper, because:

* model deserialization costs tens of microseconds per field; ten thousand
  pods would take seconds, and a watch event must reach the datastore in
  well under 100 ms;
* ``Watch`` answers a 410 by retrying once with the same stale
  resourceVersion, while a reflector must re-list;
* we need a read timeout per watch (half-open connections) and jittered
  backoff that we control.

Protocol, as client-go's reflector does it:

1. ``GET <collection>?limit=N`` then ``&continue=`` pages; the first page's
   ``metadata.resourceVersion`` is the snapshot version.  The full list is
   handed to :meth:`Handler.on_list` (which replaces what it knew).
2. ``GET <collection>?watch=1&resourceVersion=RV&allowWatchBookmarks=true
   &timeoutSeconds=T``: one JSON event per line.  Each event (and BOOKMARK)
   advances RV; when the server ends the stream we re-watch from RV.
3. 410 Gone, as the HTTP status or as an ``ERROR`` event with code 410
   ("too old resource version"), or an expired ``continue``: re-list.
4. Any other failure (connection refused or reset, 5xx, a read that sees
   nothing for ``read_timeout`` seconds): wait with jittered exponential
   backoff and re-watch from RV (a restarted API server usually still
   serves it; if not, step 3 applies).
5. 404 on an optional resource (a CRD that is not installed): report an
   empty list and look again every ``absent_retry`` seconds.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from dataclasses import dataclass
from typing import Protocol

import aiohttp

__all__ = ["Resource", "Handler", "Watcher", "Backoff", "WatchError", "Gone"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resource:
    """A collection to list and watch."""

    plural: str
    group: str = ""
    version: str = "v1"
    namespace: str | None = None
    optional: bool = False
    name: str | None = None   # watch one object (fieldSelector metadata.name): RBAC resourceNames can then apply

    @property
    def path(self) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        return f"{base}/{self.plural}"

    @property
    def label(self) -> str:
        name = self.plural if not self.group else f"{self.plural}.{self.group}/{self.version}"
        if self.name:
            name += f"/{self.name}"
        return f"{self.namespace}/{name}" if self.namespace else name

    def query(self) -> list[tuple[str, str]]:
        return [("fieldSelector", f"metadata.name={self.name}")] if self.name else []


class Handler(Protocol):
    """What a watcher reports to; every method runs in the event loop and must be quick."""

    def on_list(self, resource: Resource, items: list[dict]) -> None: ...
    def on_event(self, resource: Resource, kind: str, obj: dict) -> None: ...
    def on_healthy(self, resource: Resource) -> None: ...
    def on_error(self, resource: Resource, message: str, fatal: bool) -> None: ...


class WatchError(Exception):
    """A failed request; ``status`` is the HTTP status (0 for transport errors)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Gone(WatchError):
    """410: the resourceVersion (or continue token) is too old; re-list."""

    def __init__(self, message: str = "410 Gone: too old resource version") -> None:
        super().__init__(410, message)


class Backoff:
    """Jittered exponential backoff: ``base * 2**n`` capped at ``cap``, with "equal jitter"."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.attempt = 0


class Watcher:
    """List and watch one resource forever (until :meth:`stop`), reporting to a handler."""

    def __init__(self, api, resource: Resource, handler: Handler, *, page_size: int = 500,
                 watch_timeout: int = 300, read_timeout: float = 90.0, list_timeout: float = 60.0,
                 backoff: Backoff | None = None, absent_retry: float = 60.0, redact=lambda s: s) -> None:
        self.api = api
        self.resource = resource
        self.handler = handler
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.read_timeout = read_timeout
        self.list_timeout = list_timeout
        self.backoff = backoff or Backoff()
        self.absent_retry = absent_retry
        self.redact = redact
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.lists = 0          # completed lists (initial + re-lists)
        self.watches = 0        # watch requests opened
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._healthy = True

    @property
    def task(self) -> asyncio.Task | None:
        """The running loop, once started."""
        return self._task

    def start(self) -> asyncio.Task:
        self._task = asyncio.create_task(self.run(), name=f"k8s-watch-{self.resource.label}")
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def run(self) -> None:
        while not self._stopping:
            try:
                if self.resource_version is None:
                    items, rv = await self.list_all()
                    self.resource_version = rv
                    self.lists += 1
                    self.handler.on_list(self.resource, items)
                    del items                     # the raw objects must not live on beside the watch
                    self.synced.set()
                    self._healthy = True
                    self.handler.on_healthy(self.resource)
                await self.watch_once()
                self.backoff.reset()
            except asyncio.CancelledError:
                raise
            except Gone as exc:
                log.info("%s: %s; re-listing", self.resource.label, exc)
                self.resource_version = None
            except WatchError as exc:
                if exc.status in (404, 403) and self.resource.optional:
                    # not installed (404), or not granted (403: e.g. no RoleBinding in a namespace that
                    # does not exist): an optional source counts as empty; look again later
                    if exc.status == 403 and self.lists == 0:
                        log.info("%s: %s; treated as absent", self.resource.label, exc)
                    self.resource_version = None
                    if not self.synced.is_set() or self.lists == 0:
                        self.handler.on_list(self.resource, [])
                    self.synced.set()
                    self._healthy = True
                    self.handler.on_healthy(self.resource)
                    await asyncio.sleep(self.absent_retry)
                    continue
                fatal = exc.status in (401, 403)
                self._healthy = False
                self.handler.on_error(self.resource, self.redact(f"{self.resource.label}: {exc}"), fatal)
                await asyncio.sleep(self.backoff.next_delay())
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                message = _transport_message(exc, self.read_timeout)
                self._healthy = False
                self.handler.on_error(self.resource, self.redact(f"{self.resource.label}: {message}"), False)
                await asyncio.sleep(self.backoff.next_delay())
            except Exception as exc:  # noqa: BLE001 - an odd object must not end the watcher silently
                log.exception("%s: unexpected error; re-listing", self.resource.label)
                self._healthy = False
                self.resource_version = None
                self.handler.on_error(
                    self.resource, self.redact(f"{self.resource.label}: internal error ({type(exc).__name__}); re-listing"),
                    False)
                await asyncio.sleep(self.backoff.next_delay())

    async def _get(self, query: list[tuple[str, str]], timeout: aiohttp.ClientTimeout):
        return await self.api.call_api(
            self.resource.path, "GET", query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=timeout)

    async def _page(self, token: str | None, timeout: aiohttp.ClientTimeout) -> bytes:
        query = [("limit", str(self.page_size)), *self.resource.query()]
        if token:
            query.append(("continue", token))
        resp = await self._get(query, timeout)
        try:
            body = await resp.read()
            if resp.status != 200:
                raise _status_error(resp.status, body, f"list {self.resource.path}")
            return body
        finally:
            resp.release()

    async def list_all(self) -> tuple[list[dict], str]:
        """All items over every page, and the snapshot's resourceVersion.

        Pages are pipelined: the next page is requested as soon as its
        ``continue`` token is seen in the head of the current one (API
        servers write ``metadata`` before ``items``), so the server encodes
        page N+1 while we decode page N.  The token is checked against the
        decoded page; a mismatch drops the prefetch.
        """
        items: list[dict] = []
        rv = ""
        timeout = aiohttp.ClientTimeout(total=self.list_timeout, sock_connect=10)
        body = await self._page(None, timeout)
        first = True
        while True:
            peeked = _peek_continue(body)
            prefetch = asyncio.ensure_future(self._page(peeked, timeout)) if peeked else None
            try:
                doc = json.loads(body)
            except BaseException:
                if prefetch is not None:
                    prefetch.cancel()
                raise
            meta = doc.get("metadata") or {}
            if first:
                rv = str(meta.get("resourceVersion") or "")
                first = False
            items.extend(doc.get("items") or [])
            token = meta.get("continue")
            if prefetch is not None and token != peeked:
                prefetch.cancel()
                prefetch = None
            if not token:
                return items, rv
            body = await prefetch if prefetch is not None else await self._page(token, timeout)

    async def watch_once(self) -> None:
        """One watch request, until the server closes it; raises on errors."""
        query = [("watch", "1"), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(int(self.watch_timeout * random.uniform(1.0, 1.5)))), *self.resource.query()]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.read_timeout)
        resp = await self._get(query, timeout)
        self.watches += 1
        try:
            if resp.status != 200:
                raise _status_error(resp.status, await resp.read(), f"watch {self.resource.path}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return  # server ended the watch (timeoutSeconds); re-watch from resource_version
                if not self._healthy:
                    self._healthy = True       # data flows again after an error
                    self.handler.on_healthy(self.resource)
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        raise Gone(f"410 Gone: {obj.get('message') or 'too old resource version'}")
                    raise WatchError(code, f"watch error {code}: {obj.get('message') or obj.get('reason')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                if kind == "BOOKMARK":
                    continue
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.handler.on_event(self.resource, kind, obj)
        finally:
            resp.release()


_CONTINUE = re.compile(rb'"continue"\s*:\s*"([^"\\]*)"')


def _peek_continue(body: bytes) -> str | None:
    """The list's ``metadata.continue`` from the head of the body, without decoding it all."""
    head = body[:4096]
    cut = head.find(b'"items"')
    match = _CONTINUE.search(head if cut < 0 else head[:cut])
    return match.group(1).decode() if match else None


def _status_error(status: int, body: bytes, what: str) -> WatchError:
    message = ""
    try:
        doc = json.loads(body)
        message = str(doc.get("message") or doc.get("reason") or "")
    except (ValueError, AttributeError):
        pass
    if status == 410:
        return Gone(f"410 Gone on {what}: {message or 'too old resource version'}")
    reason = {401: "Unauthorized: the API server rejected the credentials",
              403: "Forbidden: the credentials lack RBAC permission"}.get(status, message or "request failed")
    if status in (401, 403) and message and message not in reason:
        reason += f" ({message})"
    return WatchError(status, f"HTTP {status} on {what}: {reason}")


def _transport_message(exc: BaseException, read_timeout: float) -> str:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return f"no data for {read_timeout:g} s (half-open connection?); reconnecting"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "API server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "watch stream interrupted"
    if isinstance(exc, ValueError):
        return f"malformed response ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
