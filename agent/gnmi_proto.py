"""The gNMI messages of the face: gnmi.proto 0.10.0 and gnmi_ext.proto with Commit and Depth.

The descriptors come from the `gnmi-pb` package on PyPI (generated from
openconfig/gnmi v0.11, whose gnmi.proto announces 0.10.0; pygnmi's own
stubs are gnmi 0.8 and lack the Commit and Depth extensions).  They are
loaded into a descriptor pool of our own instead of protobuf's default
pool: two stub sets that both define `gnmi.proto` cannot share the
default pool ("duplicate file name"), and a process may already hold
pygnmi's (a test, a script that embeds the agent next to a pygnmi
client).  The wire does not care: field numbers are what a client and
the agent exchange, and they are the same in both.

    from agent.gnmi_proto import gnmi_pb2, gnmi_ext_pb2
    gnmi_pb2.SetRequest(...), gnmi_ext_pb2.Extension(commit=gnmi_ext_pb2.Commit(...))

Only the serialized FileDescriptorProto literals are read from gnmi-pb's
generated modules (with `ast`, never executed), so importing this module
never touches the default pool.
"""
from __future__ import annotations

import ast
import importlib.resources
from types import SimpleNamespace

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from google.protobuf.internal import enum_type_wrapper

__all__ = ["gnmi_pb2", "gnmi_ext_pb2", "gnmi_pb2_grpc", "pool", "GNMI_PROTO_VERSION"]

_PACKAGE = "gnmi_pb"


def _serialized_descriptor(module_file: str) -> bytes:
    """The bytes literal a generated `*_pb2.py` passes to AddSerializedFile."""
    text = importlib.resources.files(_PACKAGE).joinpath(module_file).read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile" and node.args:
            value = ast.literal_eval(node.args[0])
            if isinstance(value, bytes):
                return value
    raise ImportError(f"{_PACKAGE}/{module_file} holds no serialized file descriptor")


def _module(file_desc, pool: descriptor_pool.DescriptorPool, name: str) -> SimpleNamespace:
    """A namespace shaped like a generated `_pb2` module: message classes, enums and enum values."""
    ns = SimpleNamespace(DESCRIPTOR=file_desc, __name__=name)
    for msg_name, msg_desc in file_desc.message_types_by_name.items():
        setattr(ns, msg_name, message_factory.GetMessageClass(msg_desc))
    for enum_name, enum_desc in file_desc.enum_types_by_name.items():
        setattr(ns, enum_name, enum_type_wrapper.EnumTypeWrapper(enum_desc))
        for value in enum_desc.values:
            setattr(ns, value.name, value.number)
    return ns


def _load() -> tuple[descriptor_pool.DescriptorPool, SimpleNamespace, SimpleNamespace]:
    pool = descriptor_pool.DescriptorPool()
    for dependency in (any_pb2, descriptor_pb2, duration_pb2):
        pool.AddSerializedFile(dependency.DESCRIPTOR.serialized_pb)
    ext_file = pool.AddSerializedFile(_serialized_descriptor("gnmi_ext_pb2.py"))
    gnmi_file = pool.AddSerializedFile(_serialized_descriptor("gnmi_pb2.py"))
    ext_file = pool.FindFileByName(ext_file.name) if not hasattr(ext_file, "message_types_by_name") else ext_file
    gnmi_file = pool.FindFileByName(gnmi_file.name) if not hasattr(gnmi_file, "message_types_by_name") else gnmi_file
    return pool, _module(gnmi_file, pool, "gnmi_pb2"), _module(ext_file, pool, "gnmi_ext_pb2")


pool, gnmi_pb2, gnmi_ext_pb2 = _load()

#: the gnmi.proto version these messages carry (the `gnmi_service` file option), e.g. "0.10.0"
GNMI_PROTO_VERSION: str = ""


def _proto_version() -> str:
    file_proto = descriptor_pb2.FileDescriptorProto()
    gnmi_pb2.DESCRIPTOR.CopyToProto(file_proto)
    options_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.FileOptions"))
    options = options_class.FromString(file_proto.options.SerializeToString())
    return str(options.Extensions[pool.FindExtensionByName("gnmi.gnmi_service")])


GNMI_PROTO_VERSION = _proto_version()


class GnmiStub:
    """A client stub for the gNMI service on these messages (sync or grpc.aio channel), as gnmi_pb2_grpc has."""

    def __init__(self, channel) -> None:
        def method(name: str, request, response, streaming: bool = False):
            make = channel.stream_stream if streaming else channel.unary_unary
            return make(f"/gnmi.gNMI/{name}", request_serializer=request.SerializeToString,
                        response_deserializer=response.FromString)

        self.Capabilities = method("Capabilities", gnmi_pb2.CapabilityRequest, gnmi_pb2.CapabilityResponse)
        self.Get = method("Get", gnmi_pb2.GetRequest, gnmi_pb2.GetResponse)
        self.Set = method("Set", gnmi_pb2.SetRequest, gnmi_pb2.SetResponse)
        self.Subscribe = method("Subscribe", gnmi_pb2.SubscribeRequest, gnmi_pb2.SubscribeResponse, streaming=True)


#: shaped like a generated `gnmi_pb2_grpc` module (client side only)
gnmi_pb2_grpc = SimpleNamespace(gNMIStub=GnmiStub)
