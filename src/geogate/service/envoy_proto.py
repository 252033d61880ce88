"""The protobuf messages of Envoy's ext_authz gRPC API that geogate needs, built at import.

Only the messages (and fields) the check uses are declared, with the package names and field
numbers of the public Envoy API (``envoy/service/auth/v3/external_auth.proto``,
``attribute_context.proto``, ``envoy/config/core/v3/{base,address}.proto``,
``envoy/type/v3/http_status.proto``, ``google/rpc/status.proto``). Fields not declared here
are kept as unknown fields by the protobuf runtime and ignored, which is how proto3 readers of
an older schema behave, so Envoy may send a richer request than this schema knows.

The descriptors live in a private pool: no generated code, no protoc at build or run time, and
no clash with another library registering the same names in the default pool.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED

SERVICE_NAME: Final = "envoy.service.auth.v3.Authorization"
CHECK_METHOD: Final = f"/{SERVICE_NAME}/Check"


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    type_name: str | None = None,
    repeated: bool = False,
    oneof: int | None = None,
) -> None:
    f = message.field.add(
        name=name, number=number, type=kind, label=_REPEATED if repeated else _OPTIONAL
    )
    if type_name is not None:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _map(message: descriptor_pb2.DescriptorProto, name: str, number: int, entry: str) -> None:
    """A ``map<string, string>`` field: a repeated nested ``*Entry`` message with map_entry."""
    nested = message.nested_type.add(name=entry)
    nested.options.map_entry = True
    _field(nested, "key", 1, _F.TYPE_STRING)
    _field(nested, "value", 2, _F.TYPE_STRING)
    _field(message, name, number, _F.TYPE_MESSAGE, type_name=entry, repeated=True)


def _file(
    name: str, package: str, deps: tuple[str, ...] = ()
) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=list(deps)
    )


def _rpc_status() -> descriptor_pb2.FileDescriptorProto:
    fd = _file("google/rpc/status.proto", "google.rpc")
    status = fd.message_type.add(name="Status")
    _field(status, "code", 1, _F.TYPE_INT32)
    _field(status, "message", 2, _F.TYPE_STRING)
    return fd


def _http_status() -> descriptor_pb2.FileDescriptorProto:
    fd = _file("envoy/type/v3/http_status.proto", "envoy.type.v3")
    codes = fd.enum_type.add(name="StatusCode")
    for label, number in (
        ("Empty", 0),
        ("OK", 200),
        ("BadRequest", 400),
        ("Forbidden", 403),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
    ):
        codes.value.add(name=label, number=number)
    status = fd.message_type.add(name="HttpStatus")
    _field(status, "code", 1, _F.TYPE_ENUM, type_name=".envoy.type.v3.StatusCode")
    return fd


def _core() -> descriptor_pb2.FileDescriptorProto:
    fd = _file("envoy/config/core/v3/geogate_subset.proto", "envoy.config.core.v3")
    sock = fd.message_type.add(name="SocketAddress")
    _field(sock, "address", 2, _F.TYPE_STRING)
    _field(sock, "port_value", 3, _F.TYPE_UINT32)
    addr = fd.message_type.add(name="Address")
    addr.oneof_decl.add(name="address")
    _field(
        addr,
        "socket_address",
        1,
        _F.TYPE_MESSAGE,
        type_name=".envoy.config.core.v3.SocketAddress",
        oneof=0,
    )
    value = fd.message_type.add(name="HeaderValue")
    _field(value, "key", 1, _F.TYPE_STRING)
    _field(value, "value", 2, _F.TYPE_STRING)
    _field(value, "raw_value", 3, _F.TYPE_BYTES)
    option = fd.message_type.add(name="HeaderValueOption")
    action = option.enum_type.add(name="HeaderAppendAction")
    for label, number in (
        ("APPEND_IF_EXISTS_OR_ADD", 0),
        ("ADD_IF_ABSENT", 1),
        ("OVERWRITE_IF_EXISTS_OR_ADD", 2),
        ("OVERWRITE_IF_EXISTS", 3),
    ):
        action.value.add(name=label, number=number)
    _field(option, "header", 1, _F.TYPE_MESSAGE, type_name=".envoy.config.core.v3.HeaderValue")
    _field(
        option,
        "append_action",
        3,
        _F.TYPE_ENUM,
        type_name=".envoy.config.core.v3.HeaderValueOption.HeaderAppendAction",
    )
    header_map = fd.message_type.add(name="HeaderMap")
    _field(
        header_map,
        "headers",
        1,
        _F.TYPE_MESSAGE,
        type_name=".envoy.config.core.v3.HeaderValue",
        repeated=True,
    )
    return fd


def _auth() -> descriptor_pb2.FileDescriptorProto:
    fd = _file(
        "envoy/service/auth/v3/geogate_subset.proto",
        "envoy.service.auth.v3",
        (
            "google/rpc/status.proto",
            "envoy/type/v3/http_status.proto",
            "envoy/config/core/v3/geogate_subset.proto",
        ),
    )
    ctx = fd.message_type.add(name="AttributeContext")
    peer = ctx.nested_type.add(name="Peer")
    _field(peer, "address", 1, _F.TYPE_MESSAGE, type_name=".envoy.config.core.v3.Address")
    http = ctx.nested_type.add(name="HttpRequest")
    _field(http, "id", 1, _F.TYPE_STRING)
    _field(http, "method", 2, _F.TYPE_STRING)
    _map(http, "headers", 3, "HeadersEntry")
    _field(http, "path", 4, _F.TYPE_STRING)
    _field(http, "host", 5, _F.TYPE_STRING)
    _field(http, "header_map", 13, _F.TYPE_MESSAGE, type_name=".envoy.config.core.v3.HeaderMap")
    request = ctx.nested_type.add(name="Request")
    _field(
        request,
        "http",
        2,
        _F.TYPE_MESSAGE,
        type_name=".envoy.service.auth.v3.AttributeContext.HttpRequest",
    )
    peer_type = ".envoy.service.auth.v3.AttributeContext.Peer"
    _field(ctx, "source", 1, _F.TYPE_MESSAGE, type_name=peer_type)
    _field(ctx, "destination", 2, _F.TYPE_MESSAGE, type_name=peer_type)
    _field(
        ctx,
        "request",
        4,
        _F.TYPE_MESSAGE,
        type_name=".envoy.service.auth.v3.AttributeContext.Request",
    )
    _map(ctx, "context_extensions", 10, "ContextExtensionsEntry")

    check = fd.message_type.add(name="CheckRequest")
    _field(
        check, "attributes", 1, _F.TYPE_MESSAGE, type_name=".envoy.service.auth.v3.AttributeContext"
    )

    header_option = ".envoy.config.core.v3.HeaderValueOption"
    denied = fd.message_type.add(name="DeniedHttpResponse")
    _field(denied, "status", 1, _F.TYPE_MESSAGE, type_name=".envoy.type.v3.HttpStatus")
    _field(denied, "headers", 2, _F.TYPE_MESSAGE, type_name=header_option, repeated=True)
    _field(denied, "body", 3, _F.TYPE_STRING)

    ok = fd.message_type.add(name="OkHttpResponse")
    _field(ok, "headers", 2, _F.TYPE_MESSAGE, type_name=header_option, repeated=True)
    _field(ok, "headers_to_remove", 5, _F.TYPE_STRING, repeated=True)
    _field(
        ok, "response_headers_to_add", 6, _F.TYPE_MESSAGE, type_name=header_option, repeated=True
    )

    response = fd.message_type.add(name="CheckResponse")
    response.oneof_decl.add(name="http_response")
    _field(response, "status", 1, _F.TYPE_MESSAGE, type_name=".google.rpc.Status")
    _field(
        response,
        "denied_response",
        2,
        _F.TYPE_MESSAGE,
        type_name=".envoy.service.auth.v3.DeniedHttpResponse",
        oneof=0,
    )
    _field(
        response,
        "ok_response",
        3,
        _F.TYPE_MESSAGE,
        type_name=".envoy.service.auth.v3.OkHttpResponse",
        oneof=0,
    )
    return fd


POOL: Final = descriptor_pool.DescriptorPool()
for _fd in (_rpc_status(), _http_status(), _core(), _auth()):
    POOL.Add(_fd)


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))


# The message classes. They are typed Any: their fields exist only at run time.
CheckRequest: Final[Any] = _message("envoy.service.auth.v3.CheckRequest")
CheckResponse: Final[Any] = _message("envoy.service.auth.v3.CheckResponse")
AttributeContext: Final[Any] = _message("envoy.service.auth.v3.AttributeContext")
DeniedHttpResponse: Final[Any] = _message("envoy.service.auth.v3.DeniedHttpResponse")
OkHttpResponse: Final[Any] = _message("envoy.service.auth.v3.OkHttpResponse")
HeaderValueOption: Final[Any] = _message("envoy.config.core.v3.HeaderValueOption")
HttpStatus: Final[Any] = _message("envoy.type.v3.HttpStatus")
RpcStatus: Final[Any] = _message("google.rpc.Status")

#: ``HeaderValueOption.append_action`` value that replaces a header the client sent.
OVERWRITE_IF_EXISTS_OR_ADD: Final = 2
