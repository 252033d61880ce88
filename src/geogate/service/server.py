"""Running the decision service: uvicorn for HTTP, grpcio for Envoy's gRPC ext_authz.

Everything that can be wrong with the configuration (values, policy files, listen addresses)
is found before the first request: :func:`run` raises ConfigError/PolicyError, which the CLI
prints as one line. Both listening sockets are bound here, so a busy port is such an error too.
"""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn

from geogate.errors import ConfigError
from geogate.service.app import create_app, freeze_heap, service_of
from geogate.service.config import ServiceConfig, describe
from geogate.service.grpc_authz import AuthorizationServicer, GrpcAuthzServer
from geogate.service.ports import AccountStatusPort

log = logging.getLogger("geogate.service")


def configure_logging(level: str) -> None:
    """One-line log records on stderr for geogate's own loggers."""
    logger = logging.getLogger("geogate")
    if not any(getattr(h, "_geogate", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("geogate: %(levelname)s: %(message)s"))
        handler._geogate = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0 picks a free one).

    Raises ConfigError with the reason when the address cannot be used.
    """
    # Numeric hosts only: resolving a name at start would need DNS.
    numeric = "127.0.0.1" if host == "localhost" else host
    try:
        infos = socket.getaddrinfo(
            numeric,
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV | socket.AI_NUMERICHOST,
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot resolve listen address {host!r}: {exc.strerror}", key="host"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", key="port") from None
    sock.set_inheritable(True)
    return sock


def run(config: ServiceConfig, *, accounts: AccountStatusPort | None = None) -> None:
    """Serve until SIGINT/SIGTERM. SIGHUP reloads policy and snapshot."""
    configure_logging(config.log_level)
    app = create_app(config, accounts=accounts, freeze_gc=True)
    service = service_of(app)
    sock = bind_socket(config.host, config.port)
    grpc_server: GrpcAuthzServer | None = None
    if config.grpc_address is not None:
        servicer = AuthorizationServicer(
            service.ref,
            account_header=config.account_header,
            accounts=service.accounts,
            metrics=service.metrics,
        )
        grpc_server = GrpcAuthzServer(servicer, address=config.grpc_address)
        try:
            grpc_port = grpc_server.start()
        except ConfigError:
            sock.close()
            raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    grpc_text = f", gRPC ext_authz on port {grpc_port}" if grpc_server is not None else ""
    log.info("serving on http://%s:%d%s", shown, port, grpc_text)
    log.info("configuration: %s", describe(config))
    uv_config = uvicorn.Config(
        app,
        # Forwarding headers are geogate's business (trusted_proxies), not uvicorn's:
        proxy_headers=False,
        server_header=False,
        access_log=config.access_log,
        log_level=config.log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
        backlog=2048,
    )
    server = uvicorn.Server(uv_config)
    freeze_heap()
    try:
        server.run(sockets=[sock])
    finally:
        if grpc_server is not None:
            grpc_server.stop()
        sock.close()
