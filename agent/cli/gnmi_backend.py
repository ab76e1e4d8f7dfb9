"""The gNMI backend: `kubefabric cli` talking to a local or remote agent.

Plain gNMI with username/password metadata, as any client would: Get
(JSON_IETF) for tables and settings, Set for config, Subscribe ONCE with
the History extension (snapshot_time or range) for the time machine.
Responses are read whatever their shape: one update per leaf, per list
entry, or one subtree for the whole path all turn into the same rows.
"""
from __future__ import annotations

from pathlib import Path

import grpc
from agent.gnmi_proto import gnmi_ext_pb2, gnmi_pb2, gnmi_pb2_grpc

from .backend import NODES_TABLE, Edit, node_name_from
from .commands import Table
from .errors import CliError, NotImplementedByAgent
from .wire import (JSON_IETF, FabricAnswer, collect_container, collect_rows, decode, fabric_answer,  # noqa: F401
                   set_request, snapshot_extension, to_path, _deleted_keys)


class GnmiBackend:
    """An agent reached over gNMI."""

    def __init__(
        self,
        addr: str,
        username: str,
        password: str,
        *,
        insecure: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.addr = addr
        self.user = username
        self.node = addr.rpartition(":")[0].strip("[]") or addr
        self._metadata = (("username", username), ("password", password))
        self._timeout = timeout
        if insecure:
            self._channel = grpc.aio.insecure_channel(addr)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca), private_key=_read(tls_key), certificate_chain=_read(tls_cert)
            )
            options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
            self._channel = grpc.aio.secure_channel(addr, creds, options=options)
        self._stub = gnmi_pb2_grpc.gNMIStub(self._channel)

    async def connect(self) -> "GnmiBackend":
        """Check the credentials and learn the node name (for the prompt)."""
        nodes = await self.rows(NODES_TABLE)
        self.node = node_name_from(nodes, self.addr, self.node)
        return self

    # -- reading ---------------------------------------------------------------------
    async def _get(self, path: str, config_only: bool = False) -> list:
        kind = gnmi_pb2.GetRequest.CONFIG if config_only else gnmi_pb2.GetRequest.ALL
        request = gnmi_pb2.GetRequest(path=[to_path(path)], encoding=JSON_IETF, type=kind)
        try:
            response = await self._stub.Get(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise self._error(exc) from None
        return list(response.notification)

    async def rows(self, table: Table, config_only: bool = False) -> list[dict]:
        return list(collect_rows(await self._get(table.path, config_only), table).values())

    async def settings(self, table: Table) -> dict:
        return collect_container(await self._get(table.path), table)

    async def fabric_rows(self, table: Table, target: str, config_only: bool = False) -> FabricAnswer:
        kind = gnmi_pb2.GetRequest.CONFIG if config_only else gnmi_pb2.GetRequest.ALL
        request = gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[to_path(table.path)],
                                      encoding=JSON_IETF, type=kind)
        return fabric_answer(await self._fabric_get(request), table, target)

    async def fabric_snapshot(self, table: Table, t: float, target: str) -> FabricAnswer:
        request = gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[to_path(table.path)],
                                      encoding=JSON_IETF, extension=[snapshot_extension(t)])
        return fabric_answer(await self._fabric_get(request), table, target)

    async def _fabric_get(self, request: gnmi_pb2.GetRequest) -> list:
        try:
            response = await self._stub.Get(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and "fabric member" not in (exc.details() or ""):
                return []
            raise self._error(exc) from None
        return list(response.notification)

    # -- writing ---------------------------------------------------------------------
    async def apply(self, edit: Edit, target: str | None = None) -> None:
        request = set_request(edit, target)
        try:
            await self._stub.Set(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    # -- the time machine ------------------------------------------------------------
    async def _history(self, table: Table, history: gnmi_ext_pb2.History) -> list:
        """Notifications of a history query.

        gnmi-history.md: snapshot_time is a ONCE subscription (the table at
        that time, then sync_response); range is a STREAM subscription
        (updates_only: no table at the start) that the target ends after
        the last change in the range.
        """
        is_range = history.WhichOneof("request") == "range"
        request = gnmi_pb2.SubscribeRequest(
            subscribe=gnmi_pb2.SubscriptionList(
                subscription=[gnmi_pb2.Subscription(path=to_path(table.path), mode=gnmi_pb2.ON_CHANGE)],
                mode=gnmi_pb2.SubscriptionList.STREAM if is_range else gnmi_pb2.SubscriptionList.ONCE,
                encoding=JSON_IETF,
                updates_only=is_range,
            ),
            extension=[gnmi_ext_pb2.Extension(history=history)],
        )
        notifications = []
        call = self._stub.Subscribe(iter([request]), metadata=self._metadata, timeout=self._timeout)
        try:
            async for response in call:
                if response.HasField("update"):
                    notifications.append(response.update)
                elif response.sync_response and not is_range:
                    break
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotImplementedByAgent(
                    f"the agent at {self.addr} cannot answer history queries "
                    f"(gNMI History extension UNIMPLEMENTED: {exc.details() or 'no reason given'})"
                ) from None
            raise self._error(exc) from None
        finally:
            call.cancel()
        return notifications

    async def snapshot(self, table: Table, t: float) -> list[dict]:
        notifications = await self._history(table, gnmi_ext_pb2.History(snapshot_time=int(t * 1e9)))
        return list(collect_rows(notifications, table).values())

    async def changes(self, table: Table, t1: float, t2: float) -> list[dict]:
        time_range = gnmi_ext_pb2.TimeRange(start=int(t1 * 1e9), end=int(t2 * 1e9))
        notifications = await self._history(table, gnmi_ext_pb2.History(range=time_range))
        events = []
        last: dict[tuple, dict] = {}  # what each entry looked like, so a delete shows what went
        before: dict[tuple, dict] | None = None
        for n in notifications:
            when = n.timestamp / 1e9
            for ident, row in collect_rows([n], table).items():
                row.pop("_ts", None)
                last[ident] = row
                events.append({**row, "time": when, "change": "update"})
            for key in _deleted_keys(n, table):
                ident = tuple(str(key.get(k)) for k in table.keys)
                if ident not in last and before is None:  # deleted before it changed in the range
                    before = collect_rows(
                        await self._history(table, gnmi_ext_pb2.History(snapshot_time=int(t1 * 1e9))), table)
                row = {**(last.pop(ident, None) or (before or {}).get(ident, {})), **key}
                row.pop("_ts", None)
                events.append({**row, "time": when, "change": "delete"})
        return events

    async def close(self) -> None:
        await self._channel.close()

    def _error(self, exc: grpc.aio.AioRpcError) -> CliError:
        """One line for a failed RPC, keeping the agent's own message."""
        code, details = exc.code(), (exc.details() or "").strip()
        if code == grpc.StatusCode.UNAVAILABLE:
            return CliError(f"cannot reach the agent at {self.addr}: {details or 'unavailable'}")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return CliError(f"authentication failed for user {self.user}" + (f": {details}" if details else ""))
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return CliError(f"permission denied: {details.removeprefix('access-denied: ')}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CliError(f"the agent at {self.addr} did not answer within {self._timeout:g}s")
        return CliError(details or code.name.lower().replace("_", " "))


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
