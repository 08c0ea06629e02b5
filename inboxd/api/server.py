"""The daemon's HTTP API: serves every operation of `inboxd.api.routes` to the caller the kernel or a token names.

The only module that imports FastAPI, Starlette or uvicorn.  `build_app`
makes one endpoint per operation of `routes.OPS` (so the endpoints, the
OpenAPI document and the client can never disagree), each of which
resolves the caller, checks the operation's least role and hands the typed
parameters to `inboxd.api.handlers.handle`.  `start` serves that app from
its own thread and event loop on the Unix socket of `[api] socket` (the
caller is the Unix user the kernel reports for the connection, through
SO_PEERCRED) and, when `[api] listen` is set, on TCP with TLS (the caller is
the agent whose token the `Authorization: Bearer` header carries).

Every error answer is one JSON object, `{"error": "one line"}`, with the
status saying what kind it is (400 bad input, 401 unknown caller, 403 not
allowed, 404 no such thing, 422 malformed parameters, 500 our fault).  An
unexpected exception is logged with its traceback and answered 500 with
only its type: a traceback never reaches a client.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time,
# and some of them name objects local to build_app.
import asyncio
import grp
import inspect
import json
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Body, Depends, FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from inboxd import __version__
from inboxd.api import handlers
from inboxd.api.identity import Caller, Refused, for_token, for_unix_user
from inboxd.api.routes import OPS, ROLE_RANK, Op, Param
from inboxd.config import Settings

log = logging.getLogger("inboxd.api")

# The ASGI scope key under which a Unix-socket connection carries its peer's (pid, uid, gid).
PEER = "inboxd.peer"
# Prometheus's text exposition format, as its scrapers expect it to be labelled.
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The longest path a Unix socket address can hold on Linux (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH = 107
# PostgreSQL cannot store a NUL character in text; every text parameter refuses one at the door (422).
_TEXT = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
# Integers meet the store's integer columns, 32-bit on PostgreSQL: a larger one is malformed input (422),
# not a database error (500).  No id, limit, tier or day count comes near.
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1

TokenCheck = Callable[[str, datetime], tuple[str, int]]


class Error(BaseModel):
    """Every error answer: one line saying what went wrong."""
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": text} for status, text in (
        (400, "Bad input: the line says which."),
        (401, "Unknown caller: not an agent of this desk, or no valid token."),
        (403, "The caller's role may not do this."),
        (404, "No such ticket, mail, token or path (or one the caller may not see)."),
        (422, "A parameter is missing or malformed."),
        (500, "The daemon failed; the line names the exception's type, the daemon's log has the rest."),
    )
}


class _Internal(Exception):
    """An unexpected failure that has been logged already; answered 500 with its type."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()) or "error"}, status_code=status)


# -- who is calling ---------------------------------------------------------------------------------


def _caller(settings: Settings, tokens: TokenCheck | None, clock: Callable[[], datetime], request: Request,
            acting_as: str | None) -> Caller:
    """The caller of `request`: the Unix peer on the socket, else the bearer token's agent; `Refused` otherwise."""
    if PEER in request.scope:
        # On the socket only the kernel's word counts: an Authorization header there is ignored.
        peer = request.scope[PEER]
        if peer is None:
            raise Refused("the kernel did not say who is connected to the socket", status=401)
        _pid, uid, _gid = peer
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise Refused(f"uid {uid} has no user name on this machine, so it is no agent", status=401) from None
        return for_unix_user(settings, user, uid, acting_as=acting_as)
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Refused("who is calling? over TCP, send `Authorization: Bearer <token>` ($INBOXD_TOKEN;"
                      " `inboxd token create` makes one)", status=401)
    if tokens is None:
        raise Refused("this daemon checks no API tokens", status=401)
    agent, token_id = tokens(secret.strip(), clock())
    host = request.client.host if request.client else "unknown"
    return for_token(settings, agent, token_id, host, acting_as=acting_as)


def _caller_dependency(settings: Settings, tokens: TokenCheck | None, clock: Callable[[], datetime]):
    """The FastAPI dependency that names the caller; it runs before any parameter is validated."""

    def caller(request: Request,
               x_inboxd_as: Annotated[str | None, Header(alias="X-Inboxd-As", description=(
                   "Act as this agent (admins only; recorded as \"admin X acting as Y\")."))] = None) -> Caller:
        try:
            return _caller(settings, tokens, clock, request, x_inboxd_as or None)
        except Refused:
            raise
        except Exception as exc:  # A token store that fails is our fault, not the caller's.
            log.exception("API: could not identify the caller of %s %s", request.method, request.url.path)
            raise _Internal(type(exc).__name__) from None

    return caller


# -- the endpoints, from the operation table --------------------------------------------------------


def _annotation(param: Param):
    """The Python type and default FastAPI validates one parameter against."""
    base: Any = {"str": _TEXT, "int": int, "bool": bool, "bool?": bool, "list": list[_TEXT]}[param.type]
    if param.required:
        return base, inspect.Parameter.empty
    if param.default is None:
        return base | None, None
    return base, param.default


def _marker(param: Param):
    """Where FastAPI reads the parameter from (path, query or a key of the JSON body), with its doc."""
    limits = {"ge": _INT_MIN, "le": _INT_MAX} if param.type == "int" else {}
    doc = param.doc or None
    if param.where == "path":
        return PathParam(description=doc, **limits)
    if param.where == "body":
        return Body(embed=True, description=doc, **limits)
    return Query(description=doc, **limits)


def _endpoint(op: Op, settings: Settings, engine, caller_dependency, clock: Callable[[], datetime]):
    """The endpoint function of `op`: its signature is the operation's parameters, so FastAPI validates them."""

    def endpoint(**kwargs):
        caller: Caller = kwargs.pop("_inboxd_caller")
        if ROLE_RANK[caller.role] < ROLE_RANK[op.role]:
            return _error(403, f"{op.name.replace('_', ' ')} needs the {op.role} role"
                               f" ({caller.agent.name} is an {caller.role})")
        try:
            result = handlers.handle(op.name, kwargs, caller, settings=settings, engine=engine, now=clock())
            if isinstance(result, handlers.Text):
                return Response(result.body, media_type=result.media_type)
            return JSONResponse(result)
        except handlers.ApiError as exc:
            return _error(exc.status, str(exc))
        except Refused as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:  # Logged with its traceback here; the client learns only the type.
            log.exception("API: %s %s by %s failed", op.method, op.path, caller.origin)
            return _error(500, f"internal error: {type(exc).__name__}")

    parameters = [inspect.Parameter("_inboxd_caller", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=Annotated[Caller, Depends(caller_dependency)])]
    for param in op.params:
        kind, default = _annotation(param)
        parameters.append(inspect.Parameter(param.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[kind, _marker(param)]))
    endpoint.__signature__ = inspect.Signature(parameters)
    endpoint.__name__ = op.name
    endpoint.__doc__ = op.summary
    return endpoint


def _success(op: Op) -> dict:
    """The documented answer of a successful call: the CLI's --json shape, or a text document."""
    if op.returns == "text":
        content = {"text/plain": {"schema": {"type": "string"}}}
        if op.name in ("report", "export"):
            content = {"application/json": {}, "text/csv": {"schema": {"type": "string"}},
                       "text/html": {"schema": {"type": "string"}}, **content}
        return {200: {"description": "The document.", "content": content}}
    return {200: {"description": "As the CLI's --json prints it (docs: design.md, JSON shapes)."}}


def build_app(settings: Settings | None, engine, *, tokens: TokenCheck | None = None,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    """The API as an ASGI app: one endpoint per operation, plus /healthz, /metrics and /openapi.json.

    `tokens(secret, now)` returns the (agent, token id) of a bearer token or
    raises `Refused` (401); without it, TCP callers are refused.  `settings`
    and `engine` may be None only to generate the OpenAPI document.
    """
    app = FastAPI(title="inboxd", version=__version__, docs_url=None, redoc_url=None,
                  description=("The API of the inboxd daemon: every read and write command of the `inboxd` CLI. "
                               "On the Unix socket the caller is the Unix user the kernel reports; over TCP "
                               "(TLS) it is the agent of the bearer token. Answers are the CLI's --json shapes; "
                               "errors are `{\"error\": \"one line\"}`."))
    caller_dependency = _caller_dependency(settings, tokens, clock)

    for op in OPS.values():
        app.add_api_route(op.path, _endpoint(op, settings, engine, caller_dependency, clock),
                          methods=[op.method], name=op.name, summary=op.summary, operation_id=op.name,
                          description=f"Least role: {op.role}.", responses={**_success(op), **_ERRORS})

    def healthz() -> JSONResponse:
        from inboxd.reports.status import health_json, read_health

        now = clock()
        verdict = read_health(engine, settings, now)
        return JSONResponse(health_json(verdict, now), status_code=200 if verdict.ok else 503)

    app.add_api_route("/healthz", healthz, methods=["GET"], name="healthz", operation_id="healthz",
                      summary="200 when every mailbox synced within its interval and the store answers, else 503;"
                              " the body (as `inboxd health --json`) gives the reason per mailbox. No caller needed.",
                      responses={200: {"description": "Healthy."}, 503: {"description": "Unhealthy: see reasons."},
                                 500: _ERRORS[500]})

    def metrics(_inboxd_caller: Annotated[Caller, Depends(caller_dependency)]) -> Response:
        from inboxd.reports.prometheus import exposition

        return Response(exposition(engine, settings, clock), media_type=PROMETHEUS_TYPE)

    app.add_api_route("/metrics", metrics, methods=["GET"], name="prometheus", operation_id="prometheus",
                      summary="The metrics in the Prometheus text format (docs/practices/metrics.md).",
                      responses={200: {"description": "The exposition.",
                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                 **{s: _ERRORS[s] for s in (400, 401, 403, 500)}})
    _error_handlers(app)
    _document_security(app)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own included, answered as `{"error": "one line"}`."""

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(_Internal)
    async def internal(_request: Request, exc: _Internal) -> JSONResponse:
        return _error(500, f"internal error: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"no such path: {request.method} {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{request.url.path} does not take {request.method}")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:3]:
            if err.get("type") == "json_invalid":
                problems.append("the body is not valid JSON")
                continue
            where = ".".join(str(part) for part in err.get("loc", ())[1:]) or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(problems) or "invalid request")


def _document_security(app: FastAPI) -> None:
    """Say in the OpenAPI document how a caller is known (the socket's peer needs no header)."""
    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Over TCP (TLS): an agent's token from `inboxd token create`. On the "
                                          "Unix socket no header is needed: the kernel names the Unix user."}}
            for path, item in schema["paths"].items():
                if path not in ("/healthz",):
                    for operation in item.values():
                        operation["security"] = [{"bearer": []}, {}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def openapi_json() -> str:
    """The OpenAPI document as committed in docs/openapi.json (scripts/openapi writes it)."""
    return json.dumps(build_app(None, None).openapi(), indent=2, ensure_ascii=False) + "\n"


# -- the Unix socket's peer -------------------------------------------------------------------------


class _WithPeer:
    """Puts the connection's peer credentials into each request's scope, for `_caller`."""

    def __init__(self, app, peer: tuple[int, int, int] | None) -> None:
        self.app, self.peer = app, peer

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, PEER: self.peer}
        await self.app(scope, receive, send)


class PeerProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol that asks the kernel who connected (SO_PEERCRED) once per connection."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer: tuple[int, int, int] | None = struct.unpack("3i", creds)
        except (OSError, AttributeError):
            peer = None
        self.app = _WithPeer(self.app, peer)


# -- serving ----------------------------------------------------------------------------------------


def _bind_unix(path: Path, group: str) -> tuple[socket.socket | None, str]:
    """The listening Unix socket at `path` (mode 0660, group `group`), or None and why there is none."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        return None, f"the path is longer than a Unix socket address holds ({MAX_SOCKET_PATH} bytes)"
    gid = _group_id(group)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o750, exist_ok=True)
        # Agents must pass through the directory to reach the socket.
        if gid is not None:
            _chgrp(path.parent, gid)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return None, "something that is not a socket is in its place; remove it"
        if _answers(path):
            # Several daemons may share one PostgreSQL store on one machine: the first keeps its socket.
            return None, "another daemon answers on it"
        path.unlink()  # Stale: left by a daemon that did not stop cleanly.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Set before listen(): until then nobody can connect, so there is no moment of wider access.
        os.chmod(path, 0o660)
        if gid is not None:
            _chgrp(path, gid)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        return None, f"cannot bind it: {exc.strerror or exc}"
    sock.setblocking(False)
    return sock, ""


def _group_id(group: str) -> int | None:
    if not group:
        log.info("API socket: [api] group is \"\", so it keeps the daemon's group")
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("API socket: group %s does not exist; the socket keeps the daemon's group, so agents outside"
                    " it cannot connect (groupadd %s, then add the agents' users to it)", group, group)
        return None


def _chgrp(path: Path, gid: int) -> None:
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("API socket: cannot give %s to group %d: %s", path, gid, exc.strerror or exc)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _bind_tcp(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, int(port)), family=family, backlog=128)
    sock.setblocking(False)
    return sock


def _store_tokens(engine) -> TokenCheck | None:
    """The check of a bearer token against the store's token table."""
    try:
        from inboxd.desk.tokens import verify
    except ImportError:  # A build without tokens: TCP callers are refused.
        return None
    return lambda secret, now: verify(engine, secret, now)


class ApiServer:
    """The running API: uvicorn in its own thread and event loop; `close()` stops it and removes the socket."""

    def __init__(self, servers: list[tuple[uvicorn.Server, list[socket.socket]]], socket_path: Path | None,
                 stop: threading.Event | None) -> None:
        self.servers, self.socket_path, self.stop = servers, socket_path, stop
        self._inode = socket_path.stat().st_ino if socket_path is not None else None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="api", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot start; say so, never die.
            self.error = exc
            log.error("API server stopped: %s: %s", type(exc).__name__, exc)

    async def _serve(self) -> None:
        async def watch() -> None:
            # The daemon's own stop event ends the API too, even before close() is called.
            while not all(server.should_exit for server, _ in self.servers):
                if self.stop is not None and self.stop.is_set():
                    self._exit()
                await asyncio.sleep(0.2)

        await asyncio.gather(watch(), *(server.serve(sockets=socks) for server, socks in self.servers))

    def _exit(self) -> None:
        for server, _ in self.servers:
            server.should_exit = True

    @property
    def started(self) -> bool:
        return all(server.started for server, _ in self.servers)

    def close(self, timeout: float = 30.0) -> None:
        self._exit()
        self.thread.join(timeout)
        path = self.socket_path
        try:
            # Remove the socket file only if it is still the one we bound.
            if path is not None and path.stat().st_ino == self._inode:
                path.unlink()
        except OSError:
            pass


def start(settings: Settings, engine, stop_event: threading.Event | None = None, *,
          tokens: TokenCheck | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
          ) -> ApiServer | None:
    """Serve the API as `[api]` says; None when there is nowhere to listen (logged).

    `tokens` defaults to the token table of the store (inboxd.desk.tokens.verify).
    """
    if tokens is None:
        tokens = _store_tokens(engine)
    app = build_app(settings, engine, tokens=tokens, clock=clock)
    # uvicorn's own start and stop lines add nothing to the one line below.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    common = dict(lifespan="off", log_config=None, access_log=False, proxy_headers=False, server_header=False,
                  timeout_graceful_shutdown=5)
    servers: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    where: list[str] = []
    socket_path = None
    if settings.api.socket is not None:
        sock, why = _bind_unix(settings.api.socket, settings.api.group)
        if sock is None:
            log.warning("API: no socket at %s: %s", settings.api.socket, why)
        else:
            socket_path = settings.api.socket
            servers.append((uvicorn.Server(uvicorn.Config(app, http=PeerProtocol, **common)), [sock]))
            where.append(f"unix socket {socket_path}")
    if settings.api.listen is not None:
        try:
            sock = _bind_tcp(settings.api.listen)
        except OSError as exc:
            log.warning("API: cannot listen on %s: %s; serving no TCP", settings.api.listen, exc.strerror or exc)
        else:
            config = uvicorn.Config(app, ssl_certfile=str(settings.api.cert), ssl_keyfile=str(settings.api.key),
                                    **common)
            try:
                # Load the certificate now, so that a bad one is reported here, not in the server's thread.
                config.load()
            except (OSError, ValueError) as exc:
                sock.close()
                log.error("API: cannot use [api] cert %s and key %s: %s; serving no TCP", settings.api.cert,
                          settings.api.key, " ".join(str(exc).split()))
            else:
                servers.append((uvicorn.Server(config), [sock]))
                where.append(f"https://{settings.api.listen}")
    if not servers:
        log.warning("API: not serving (no socket and no TCP listener)")
        return None
    log.info("API listening on %s", " and ".join(where))
    return ApiServer(servers, socket_path, stop_event)
