"""The API against its OpenAPI document: the committed copy is what the code serves, and no input makes a 500.

schemathesis generates requests for every operation from the document,
both inputs that fit it and inputs that break it, and sends them to the
real app (in-process, over ASGI) on a real store filled from Dovecot.  The
caller is the Unix user root, as the socket's SO_PEERCRED would report it,
whom the config makes an admin, so every operation is reachable.  Each
operation also gets a round with a real ticket's id, so the handlers past
"no such ticket" see generated input too.  Every answer must be no server
error, a documented status, and an error body of the documented shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from sqlalchemy import select

from inboxd.api.server import PEER, build_app, openapi_json
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store, reading
from inboxd.store.sql import t
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import write_config

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.json"
# Generated cases per operation and mode: enough to reach every parameter, bounded to about a minute in all.
EXAMPLES = 12

ADMIN = """
[[agents]]
name = "boss"
email = "boss@example.com"
role = "admin"
login = "root"
"""


def test_committed_document_is_what_the_code_serves() -> None:
    assert DOCUMENT.read_text() == openapi_json(), "docs/openapi.json is out of date: run scripts/openapi"


def test_every_operation_of_the_table_is_documented() -> None:
    from inboxd.api.routes import OPS

    document = json.loads(DOCUMENT.read_text())
    documented = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert set(OPS) <= documented
    assert {"healthz", "prometheus"} <= documented


def _as_root(app):
    """The app as the Unix socket serves it to a connection whose peer is root."""

    async def served(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, PEER: (os.getpid(), 0, 0)}
        await app(scope, receive, send)

    return served


def test_no_generated_input_makes_a_server_error(tmp_path: Path, dovecot, imap_user) -> None:
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], extra=ADMIN)
    for subject in ("Printer on fire", "打印机坏了"):
        dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject=subject,
                                                      message_id=make_message_id()))
    settings = load_settings(config)
    assert run_once(settings).failed == []
    engine = open_store(settings.store.url)
    try:
        app = _as_root(build_app(settings, engine))
        schema = openapi.from_asgi("/openapi.json", app)
        with reading(engine) as conn:
            ref = conn.execute(select(t.ticket.c.ref).order_by(t.ticket.c.id)).scalars().first()
        assert ref
        failures: list[str] = []
        checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
        for result in schema.get_all_operations():
            operation = result.ok()
            rounds = [(mode, None) for mode in GenerationMode]
            if "{id}" in operation.path:
                rounds.append((GenerationMode.POSITIVE, {"id": ref}))
            for mode, path_parameters in rounds:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                     suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def check(case) -> None:
                    response = case.call(app=app)
                    case.validate_response(response, checks=checks)

                try:
                    check()
                except Unsatisfiable:
                    # Nothing of this operation can be made invalid (it has no parameter with a constraint).
                    assert mode is GenerationMode.NEGATIVE, operation.path
                except (Exception, BaseExceptionGroup) as exc:  # Gather them all, to see every failing operation.
                    failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): "
                                    + str(exc)[:1500])
        assert not failures, "\n\n".join(failures)
    finally:
        engine.dispose()
