"""The thin client: how `inboxd` reaches the daemon's API for everyone but the store's owner.

Standard library only (http.client, ssl, json, tomllib): an agent's command
imports neither SQLAlchemy nor the mail stack, so it starts in a fraction
of the 0.3 s an interactive command may take.

Where the daemon is: `$INBOXD_URL` (`unix:///run/inboxd/api.sock`, or
`https://desk.example.com:8443` with `$INBOXD_TOKEN` and, for a private CA,
`$INBOXD_CA_FILE`), else the `[api] socket` of the config when this user may
read it, else /run/inboxd/api.sock.  Every failure is a `ClientError` whose
text is one line that names the socket or URL tried.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from inboxd.api.routes import OPS

DEFAULT_SOCKET = "/run/inboxd/api.sock"
TIMEOUT = 120.0


class ClientError(Exception):
    """The API could not be reached, or refused; str() is one line."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """Where the daemon listens: a Unix socket path, or an https URL with a token."""
    socket: str | None = None
    url: str | None = None
    token: str | None = None
    ca_file: str | None = None

    def __str__(self) -> str:
        return f"socket {self.socket}" if self.socket else str(self.url)


def find_target(config: Path | None) -> Target:
    """The daemon to talk to (see the module docstring for the order)."""
    url = os.environ.get("INBOXD_URL", "").strip()
    if url:
        if url.startswith("unix://"):
            return Target(socket=url[len("unix://"):])
        if url.startswith("https://"):
            return Target(url=url.rstrip("/"), token=os.environ.get("INBOXD_TOKEN") or None,
                          ca_file=os.environ.get("INBOXD_CA_FILE") or None)
        raise ClientError(f"INBOXD_URL: expected unix:///path/api.sock or https://host:port, got {url!r}")
    return Target(socket=configured_socket(config) or DEFAULT_SOCKET)


def configured_socket(config: Path | None) -> str | None:
    """The config's [api] socket, if this user can read the config; None otherwise."""
    from inboxd.configpath import raw_config

    data = raw_config(config) if config is not None else None
    if data is None:
        return None
    api = data.get("api")
    value = api.get("socket") if isinstance(api, dict) else None
    if not isinstance(value, str) or not value:
        return None
    return str(Path(config).parent / value)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def request(target: Target, method: str, path: str, *, body: dict | None = None,
            acting: str | None = None) -> tuple[int, str, bytes]:
    """One HTTP exchange; returns (status, content type, body).  ClientError when nothing answers."""
    headers = {"Accept": "application/json", "User-Agent": "inboxd-cli"}
    payload = None
    if body is not None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        headers["Content-Type"] = "application/json"
    if acting:
        headers["X-Inboxd-As"] = acting
    if target.socket:
        conn: http.client.HTTPConnection = _UnixConnection(target.socket, TIMEOUT)
    else:
        parts = urlsplit(target.url)
        context = ssl.create_default_context(cafile=target.ca_file)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=TIMEOUT, context=context)
        path = parts.path.rstrip("/") + path
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    except FileNotFoundError:
        raise ClientError(f"no daemon: {target} does not exist; is `inboxd run` running"
                          " (or set INBOXD_URL)?") from None
    except ConnectionRefusedError:
        raise ClientError(f"no daemon answers on {target}; is `inboxd run` running?") from None
    except PermissionError:
        raise ClientError(f"not allowed to connect to {target}; agents are members of the socket's group"
                          " (ask an admin: usermod -aG inboxd $USER)") from None
    except ssl.SSLError as exc:
        raise ClientError(f"TLS with {target} failed: {exc.reason or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"cannot reach {target}: {exc or type(exc).__name__}") from None
    finally:
        conn.close()


def call(target: Target, op: str, params: dict, *, acting: str | None = None):
    """Run operation `op` on the daemon: its JSON answer, or the text of a text operation."""
    spec = OPS[op]
    path = spec.path
    query: list[tuple[str, str]] = []
    body: dict = {}
    for p in spec.params:
        value = params.get(p.name)
        if p.where == "path":
            path = path.replace("{" + p.name + "}", quote(str(value), safe=""))
        elif value is None or (p.type == "list" and not value):
            continue
        elif p.where == "body":
            body[p.name] = list(value) if p.type == "list" else value
        elif p.type == "list":
            query += [(p.name, str(v)) for v in value]
        elif p.type in ("bool", "bool?"):
            query.append((p.name, "true" if value else "false"))
        else:
            query.append((p.name, str(value)))
    if query:
        path += "?" + urlencode(query)
    status, kind, raw = request(target, spec.method, path, body=body if spec.method != "GET" else None,
                                acting=acting)
    text = raw.decode("utf-8", errors="replace")
    if status >= 400:
        raise ClientError(_error_line(status, kind, text, target), status)
    if kind.startswith("application/json"):
        return json.loads(text)
    return text


def _error_line(status: int, kind: str, text: str, target: Target) -> str:
    if kind.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return " ".join(data["error"].split())
        if isinstance(data, dict) and isinstance(data.get("detail"), list):
            # The server's input validation: name the first bad parameter.
            first = data["detail"][0] if data["detail"] else {}
            where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "input"
            return f"{where}: {first.get('msg', 'invalid')}"
    return f"{target} answered {status}: {' '.join(text.split())[:200]}"
