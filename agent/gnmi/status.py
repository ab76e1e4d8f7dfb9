"""gNMI errors as the specification asks (section 2.5): a canonical code, a message, and details.

Every refusal the face sends carries, besides the gRPC code and a message
that starts with the YANG error-app-tag (or the NETCONF error-tag) and ends
with the path, a `google.rpc.Status` in the `grpc-status-details-bin`
trailer whose details hold:

- `google.rpc.ErrorInfo`: reason = the error-app-tag (or error-tag),
  domain "kubefabric.gnmi", metadata {"error-tag", "error-app-tag", "path"};
- `google.rpc.BadRequest` (INVALID_ARGUMENT) or `google.rpc.ResourceInfo`
  (NOT_FOUND, UNIMPLEMENTED paths) naming the path.

Clients read them with `grpc_status.rpc_status.from_call(call)` (Python)
or `status.FromError(err).Details()` (Go, gnmic).
"""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "kubefabric.gnmi"


def text(message: str, *, error_tag: str = "", app_tag: str = "", path: str = "") -> str:
    """The human message: `<app-tag or error-tag>: <message> (at <path>)`."""
    tag = app_tag or error_tag
    out = message
    if tag and not out.startswith(f"{tag}:"):
        out = f"{tag}: {out}"
    if path and path not in out:
        out += f" (at {path})"
    return out


def status(code: grpc.StatusCode, message: str, *, error_tag: str = "", app_tag: str = "",
           path: str = "") -> grpc.Status:
    """A grpc.Status carrying the google.rpc.Status details described above."""
    detail = status_pb2.Status(code=getattr(code_pb2, code.name), message=text(
        message, error_tag=error_tag, app_tag=app_tag, path=path))
    metadata = {k: v for k, v in (("error-tag", error_tag), ("error-app-tag", app_tag), ("path", path)) if v}
    _pack(detail, error_details_pb2.ErrorInfo(reason=app_tag or error_tag or code.name, domain=DOMAIN,
                                              metadata=metadata))
    if path:
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            _pack(detail, error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=path, description=message)]))
        elif code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
            _pack(detail, error_details_pb2.ResourceInfo(resource_type="gnmi.Path", resource_name=path,
                                                         description=message))
    return rpc_status.to_status(detail)


def _pack(detail: status_pb2.Status, message) -> None:
    holder = any_pb2.Any()
    holder.Pack(message)
    detail.details.append(holder)


async def abort(context, code: grpc.StatusCode | str, message: str, *, error_tag: str = "", app_tag: str = "",
                path: str = "") -> None:
    """End the RPC with `code`, the message and the google.rpc.Status details (raises AbortError)."""
    if isinstance(code, str):
        code = grpc.StatusCode[code]
    await context.abort_with_status(status(code, message, error_tag=error_tag, app_tag=app_tag, path=path))
