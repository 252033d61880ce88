"""Running the decision service: uvicorn for HTTP and, on the same event loop, Envoy's gRPC
ext_authz.

Everything that can be wrong with the configuration (values, policy files, listen addresses)
is found before the first request: :func:`run` raises ConfigError/PolicyError, which the CLI
prints as one line. Both listening sockets are bound here, so a busy port is such an error too.

With several workers (``workers``, default one per core) this process is a supervisor: it
loads the policy and the snapshot once, binds the HTTP socket, then forks the workers, which
inherit both (the snapshot's arrays are shared copy-on-write, so memory does not grow with the
number of workers) and accept on the same socket. Each worker serves gRPC on the same port
with ``SO_REUSEPORT`` (the kernel spreads connections). SIGHUP makes the supervisor load the
new data once and replace the workers (new ones first, then the old ones finish their
requests), so all workers always decide with the same data. Metrics are added up over the
workers (prometheus-client's multiprocess mode). A worker that dies is replaced.

With ``watch_seconds`` the policy and snapshot files are polled and a change reloads them as
SIGHUP does (:mod:`geogate.service.watch`): by the supervisor, or by a thread of the single
serving process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette

from geogate.errors import ConfigError, GeogateError
from geogate.service.app import create_app, freeze_heap, service_of
from geogate.service.config import ServiceConfig, describe
from geogate.service.engine import Engine, load_engine
from geogate.service.grpc_authz import AuthorizationServicer, GrpcAuthzServer
from geogate.service.metrics import ServiceMetrics, use_multiprocess
from geogate.service.ports import AccountStatusPort
from geogate.service.watch import FileWatch, WatchThread, trigger, watched_files

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


def reserve_reuseport(address: str) -> tuple[socket.socket, int]:
    """Bind (without listening) a ``SO_REUSEPORT`` socket on ``host:port``: it keeps the port
    for the workers' gRPC servers, which bind it with ``SO_REUSEPORT`` too. Returns the socket
    and the port (a free one for port 0). ConfigError when the port is taken."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port_text)))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror}", key="grpc_port") from None
    return sock, int(sock.getsockname()[1])


def run(
    config: ServiceConfig,
    *,
    accounts: AccountStatusPort | None = None,
    workers: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. SIGHUP reloads policy and snapshot.

    ``workers`` (default ``config.worker_count``) processes serve the port; with more than one,
    this process supervises them (see the module docstring).
    """
    configure_logging(config.log_level)
    count = config.worker_count if workers is None else workers
    if count > 1:
        Supervisor(config, workers=count, accounts=accounts).run()
        return
    app = create_app(config, accounts=accounts, freeze_gc=True)
    decider = service_of(app).ref.current.decider
    if decider is not None:
        decider.prepare()  # no first decision for a range computes its verdict
    sock = bind_socket(config.host, config.port)
    reservation: socket.socket | None = None
    grpc_port: int | None = None
    if config.grpc_address is not None:
        try:
            reservation, grpc_port = reserve_reuseport(config.grpc_address)
        except ConfigError:
            sock.close()
            raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    grpc_text = f", gRPC ext_authz on port {grpc_port}" if grpc_port is not None else ""
    log.info("serving on http://%s:%d%s", shown, port, grpc_text)
    log.info("configuration: %s", describe(config))
    watch = _file_watch(config)
    watcher = WatchThread(watch, service_of(app).reload) if watch is not None else None
    if watcher is not None:
        watcher.start()
    try:
        _serve(app, sock, config, refreeze=True, grpc_port=grpc_port)
    finally:
        if watcher is not None:
            watcher.stop()
        sock.close()
        if reservation is not None:
            reservation.close()


def _file_watch(config: ServiceConfig) -> FileWatch | None:
    """The file watch ``config`` asks for (``watch_seconds``), None when off or when there is
    no file to watch (built-in policy and embedded snapshot: said in the log)."""
    if not config.watch_seconds:
        return None
    files = watched_files(config.policies, config.snapshot)
    if not files:
        log.info("file watch: nothing to watch (built-in policy, embedded snapshot)")
        return None
    return FileWatch(files, config.watch_seconds)


def _serve(
    app: Starlette,
    sock: socket.socket,
    config: ServiceConfig,
    *,
    refreeze: bool,
    grpc_port: int | None,
) -> None:
    """Run uvicorn on the listening ``sock`` until SIGINT/SIGTERM, and the gRPC server on
    ``grpc_port`` (reserved by the caller with ``SO_REUSEPORT``). ``refreeze`` collects before
    freezing the heap; a forked worker only freezes what it made itself, so the collector
    never walks (and copies) the pages it shares with the supervisor.

    The gRPC server runs on uvicorn's event loop (:mod:`geogate.service.grpc_wire`): a check
    is decided inline as its call arrives, with no thread hand-off."""
    grpc_server: GrpcAuthzServer | None = None
    if grpc_port is not None and config.grpc_address is not None:
        service = service_of(app)
        servicer = AuthorizationServicer(
            service.ref,
            account_header=config.account_header,
            accounts=service.accounts,
            metrics=service.metrics,
        )
        host = config.grpc_address.rpartition(":")[0]
        grpc_server = GrpcAuthzServer(servicer, address=f"{host}:{grpc_port}", reuse_port=True)
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
    if refreeze:
        freeze_heap()
    else:
        gc.freeze()

    async def serve() -> None:
        watcher: asyncio.Task[None] | None = None
        if grpc_server is not None:
            await grpc_server.start()
            watcher = asyncio.create_task(_stop_grpc_at_exit(server, grpc_server))
        try:
            await server.serve(sockets=[sock])
        finally:
            if watcher is not None:
                watcher.cancel()
            if grpc_server is not None:
                await grpc_server.stop()

    with asyncio.Runner(loop_factory=uv_config.get_loop_factory()) as runner:
        runner.run(serve())


async def _stop_grpc_at_exit(server: uvicorn.Server, grpc_server: GrpcAuthzServer) -> None:
    """Stop the gRPC server as soon as uvicorn starts shutting down, not after its graceful
    wait: a worker being replaced stops taking gRPC connections at once, and GOAWAY sends
    Envoy's connections to the workers that replace it."""
    while not server.should_exit:
        await asyncio.sleep(0.05)
    await grpc_server.stop()


_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


@dataclass
class _Generation:
    """The workers forked from one loaded Engine."""

    engine: Engine
    pids: set[int] = field(default_factory=set)


class Supervisor:
    """The parent of ``workers`` forked worker processes (see the module docstring)."""

    def __init__(
        self, config: ServiceConfig, *, workers: int, accounts: AccountStatusPort | None = None
    ) -> None:
        self.config = config
        self.workers = workers
        self.accounts = accounts
        self.metrics_dir = tempfile.mkdtemp(prefix="geogate-metrics-")
        use_multiprocess(self.metrics_dir)
        try:
            self.reloads = ServiceMetrics(multiprocess_dir=self.metrics_dir).reloads
            engine = self._load(None)
            # Everything a worker does at start (the account store above all) is tried here
            # once, so a bad configuration is one error before forking, not a restart loop.
            service_of(
                create_app(config, engine=engine, accounts=accounts, handle_sighup=False)
            ).close()
        except BaseException:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            raise
        self.current = _Generation(engine=engine)
        self.retiring: set[int] = set()
        self.quick_failures = 0
        self.started: dict[int, float] = {}
        self.sock = bind_socket(config.host, config.port)
        self.grpc_reservation: socket.socket | None = None
        self.grpc_port: int | None = None
        if config.grpc_address is not None:
            try:
                self.grpc_reservation, self.grpc_port = reserve_reuseport(config.grpc_address)
            except ConfigError:
                self.sock.close()
                raise
        self.stopping = False
        self.failed = False
        self.watch = _file_watch(config)

    def _load(self, previous: Engine | None) -> Engine:
        engine = load_engine(self.config, previous=previous)
        if engine.decider is not None:
            engine.decider.prepare()  # built once here, shared by the workers
        if engine.snapshot_problem:
            log.warning(
                "snapshot unavailable (%s); deciding by fail mode %s until a reload succeeds",
                engine.snapshot_problem,
                self.config.fail_mode.value,
            )
        # Frozen before forking: the collector never writes to these pages, so they stay
        # shared between the workers.
        gc.collect()
        gc.freeze()
        return engine

    def run(self) -> None:
        """Fork the workers and supervise them until SIGTERM/SIGINT."""
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        grpc_text = f", gRPC ext_authz on port {self.grpc_port}" if self.grpc_port else ""
        log.info("serving on http://%s:%d%s with %d workers", shown, port, grpc_text, self.workers)
        log.info("configuration: %s", describe(self.config))
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        watch = self.watch
        wait = min(1.0, watch.interval_seconds) if watch is not None else 1.0
        if watch is not None:
            log.info(
                "watching %s every %g s",
                ", ".join(str(f) for f in watch.files),
                watch.interval_seconds,
            )
        next_poll = time.monotonic() + wait
        try:
            for _ in range(self.workers):
                self._spawn(self.current)
            while not self.stopping or self.current.pids or self.retiring:
                info = signal.sigtimedwait(_SIGNALS, wait)
                if watch is not None and not self.stopping and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + watch.interval_seconds
                    changed = watch.poll()
                    if changed:
                        self._reload(trigger(changed))
                if info is None:
                    continue
                if info.si_signo == signal.SIGCHLD:
                    self._reap()
                elif info.si_signo == signal.SIGHUP and not self.stopping:
                    self._reload()
                elif info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self._stop()
        finally:
            self.sock.close()
            if self.grpc_reservation is not None:
                self.grpc_reservation.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if self.failed:
            raise ConfigError("the workers kept failing at start (see the log above)")

    def _spawn(self, generation: _Generation) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker process (tested through the CLI)
            code = 0
            try:
                self._work(generation.engine)
            except BaseException:
                log.exception("worker failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        generation.pids.add(pid)
        self.started[pid] = time.monotonic()

    def _work(self, engine: Engine) -> None:  # pragma: no cover - runs in the worker
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads
        _exit_with_parent()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        supervisor = os.getppid()
        metrics = ServiceMetrics(multiprocess_dir=self.metrics_dir)
        app = create_app(
            self.config,
            engine=engine,
            accounts=self.accounts,
            handle_sighup=False,
            freeze_gc=True,
            service_metrics=metrics,
            after_reload=lambda: os.kill(supervisor, signal.SIGHUP),
        )
        _serve(app, self.sock, self.config, refreeze=False, grpc_port=self.grpc_port)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _mark_dead(pid, self.metrics_dir)
            lived = time.monotonic() - self.started.pop(pid, 0.0)
            if pid in self.retiring:
                self.retiring.discard(pid)
                continue
            if pid in self.current.pids:
                self.current.pids.discard(pid)
                if self.stopping:
                    continue
                self.quick_failures = self.quick_failures + 1 if lived < 5 else 0
                if self.quick_failures > 2 * self.workers:
                    log.error("workers keep failing at start; stopping")
                    self.failed = True
                    self._stop()
                    continue
                log.error("worker %d exited (%s); starting another", pid, _describe_status(status))
                time.sleep(0.5)  # no busy loop if workers die at once
                self._spawn(self.current)

    def _reload(self, trigger: str = "SIGHUP") -> None:
        try:
            engine = self._load(self.current.engine)
        except GeogateError as exc:
            self.reloads.labels("error").inc()
            log.error("reload (%s) failed, keeping the previous data: %s", trigger, exc.one_line())
            return
        self.reloads.labels("ok").inc()
        old, self.current = self.current, _Generation(engine=engine)
        for _ in range(self.workers):
            self._spawn(self.current)
        for pid in old.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.retiring |= old.pids
        log.info(
            "reloaded (%s): generation %d, policy %s, snapshot %s%s; workers replaced",
            trigger,
            engine.generation,
            engine.policy_label,
            engine.snapshot_source,
            f" UNAVAILABLE ({engine.snapshot_problem})" if engine.snapshot_problem else "",
        )

    def _stop(self) -> None:
        if not self.stopping:
            log.info("stopping %d workers", len(self.current.pids) + len(self.retiring))
        self.stopping = True
        for pid in self.current.pids | self.retiring:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _exit_with_parent() -> None:  # pragma: no cover - runs in the worker
    """Ask Linux to send this worker SIGTERM when the supervisor dies (even by SIGKILL)."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _mark_dead(pid: int, directory: str) -> None:
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"
