"""Render the text of outgoing mail from the Jinja templates under templates/.

A template is looked up per mailbox, then per language, then in English, so a
mailbox can override one file and inherit the rest.  Each of those names is
looked for in a search path of folders, a deployment's own first and then the
templates that ship with inboxd, so an admin can override one file and
inherit the rest in the same way.  Templates run in Jinja's
sandbox with strict undefined variables: a typo in a template is an error that
names the file, never a silently empty sentence in a customer's inbox.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _jinja():
    """jinja2, imported when a process first renders or checks a template: a
    daemon that sends nothing (a first sync imported as history) never loads
    it (1.75 MiB of its memory)."""
    import jinja2
    import jinja2.sandbox

    return jinja2

# The languages tried after a language's own folder, before English.
FALLBACKS = {"zh-Hant": ("zh",)}

# Mailbox names and languages become path segments; keep them to plain names.
_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_-]*", re.IGNORECASE)

# How long (seconds) the answer to "which file of the search path serves this
# name" is kept.  Looking it up costs a stat of every path tried (a missing
# per-mailbox override in each folder, then the language's file), which was
# a third of the cost of queueing an acknowledgement; kept for a few seconds,
# a file an admin adds or removes still counts within that time, and an
# edited file counts at once (Jinja checks the chosen file's mtime).
LOOKUP_SECONDS = 5.0


class TemplateError(Exception):
    """A template is missing or broken; the message names the file and the problem."""


class Templates:
    """A deployment's template folders, searched in order (see `Settings.template_dirs`)."""

    def __init__(self, roots: Path | Sequence[Path]):
        # One folder, or several searched in order: each file is taken from
        # the first folder that has it.
        self.roots = (Path(roots),) if isinstance(roots, (str, Path)) else tuple(Path(r) for r in roots)
        if not self.roots:
            raise ValueError("Templates needs at least one folder")
        self.root = self.roots[0]
        self._jinja_env = None
        # (paths tried) -> (the first that exists, or None; when that answer expires).
        self._found: dict[tuple[str, ...], tuple[str | None, float]] = {}

    @property
    def _env(self):
        """The sandboxed Jinja environment, made at the first template rendered (see _jinja)."""
        if self._jinja_env is not None:
            return self._jinja_env
        jinja2 = _jinja()
        self._jinja_env = jinja2.sandbox.SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(self.roots, encoding="utf-8"),
            undefined=jinja2.StrictUndefined,
            # HTML templates escape what they insert; plain text must not.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            keep_trailing_newline=True,
            # Block tags ({% if %}) take no line of their own in the output.
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return self._jinja_env

    def candidates(self, name: str, *, mailbox: str | None = None, language: str = "en") -> list[str]:
        """The template paths tried for `name`, relative to each folder, in lookup order."""
        for label, segment in (("mailbox", mailbox), ("language", language)):
            if segment is not None and not _SEGMENT.fullmatch(segment):
                raise TemplateError(f"{name}: invalid {label} name {segment!r}")
        paths = [f"mailboxes/{mailbox}/{name}"] if mailbox else []
        # A Traditional Chinese reader is better served by Simplified text than by English.
        fallbacks = FALLBACKS.get(language, ())
        paths += [f"{language}/{name}", *(f"{other}/{name}" for other in fallbacks), f"en/{name}"]
        return list(dict.fromkeys(paths))

    def render(self, name: str, variables: Mapping[str, Any], *, mailbox: str | None = None,
               language: str = "en") -> str:
        """The first of mailboxes/{mailbox}/{name}, {language}/{name} (zh-Hant: then zh/{name}), en/{name}, rendered."""
        return self._render_selected(name, self.candidates(name, mailbox=mailbox, language=language), variables)

    def _first(self, paths: Sequence[str]) -> str | None:
        """The first of `paths` that some folder has (see LOOKUP_SECONDS), or None."""
        key = tuple(paths)
        now = time.monotonic()
        found = self._found.get(key)
        if found is None or found[1] <= now:
            first = next((path for path in key if any((root / path).is_file() for root in self.roots)), None)
            found = self._found[key] = (first, now + LOOKUP_SECONDS)
        return found[0]

    def _render_selected(self, name: str, paths: list[str], variables: Mapping[str, Any]) -> str:
        jinja2 = _jinja()
        try:
            first = self._first(paths)
            if first is None:
                raise jinja2.TemplatesNotFound(paths)
            template = self._env.get_template(first)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"{name}: no template found (looked for {', '.join(paths)} in {self._where()})"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.message}") from None
        except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{name}: cannot load template: {_one_line(exc)}") from None
        try:
            return template.render(variables)
        except Exception as exc:
            # Anything a template does wrong (undefined variable, sandbox
            # violation, a filter given the wrong type) is the template's
            # problem, reported against its file and line.
            where = template.filename or name
            line = _template_line(exc, where)
            kind = "unsafe access" if isinstance(exc, jinja2.exceptions.SecurityError) else "error"
            location = f"{where}:{line}" if line else where
            raise TemplateError(f"{location}: {kind}: {_one_line(exc)}") from None

    def render_file(self, name: str, variables: Mapping[str, Any]) -> str:
        """Render exactly `name` (say "macros/refund.txt"), from the first folder that has it."""
        return self._render_selected(name, [name], variables)

    def check(self, name: str) -> str:
        """The file that `name` resolves to, after checking that it loads and compiles.

        For `inboxd check-config`, when no realistic variables are at hand.
        """
        jinja2 = _jinja()
        try:
            template = self._env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{name}: no template found in {self._where()}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.message}") from None
        except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{name}: cannot load template: {_one_line(exc)}") from None
        return template.filename or name

    def render_string(self, source: str, variables: Mapping[str, Any], *, name: str) -> str:
        """Render an inline template (a macro body from the config) in the same sandbox."""
        jinja2 = _jinja()
        try:
            template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{name}:{exc.lineno}: syntax error: {exc.message}") from None
        try:
            return template.render(variables)
        except Exception as exc:
            kind = "unsafe access" if isinstance(exc, jinja2.exceptions.SecurityError) else "error"
            raise TemplateError(f"{name}: {kind}: {_one_line(exc)}") from None

    def render_ack(self, variables: Mapping[str, Any], *, mailbox: str,
                   language: str, name: str = "ack") -> tuple[str, str, str | None]:
        """(subject, text, html or None) of the acknowledgement for a new ticket.

        `name` is the template folder: "ack", or another one a routing rule
        chose (e.g. "ack_vip")."""
        subject = self.render(f"{name}/subject.txt", variables, mailbox=mailbox, language=language)
        text = self.render(f"{name}/body.txt", variables, mailbox=mailbox, language=language)
        html = None
        if self._exists(f"{name}/body.html", mailbox=mailbox, language=language):
            html = self.render(f"{name}/body.html", variables, mailbox=mailbox, language=language)
        # A subject is one line, whatever the template's whitespace.
        return " ".join(subject.split()), text, html

    def _exists(self, name: str, *, mailbox: str | None, language: str) -> bool:
        return self._first(self.candidates(name, mailbox=mailbox, language=language)) is not None

    def _where(self) -> str:
        return ", ".join(str(root) for root in self.roots)


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The line of the template being rendered when `exc` was raised, if Jinja kept it.

    Jinja rewrites tracebacks so that frames of template code carry the
    template's file name and line number.
    """
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if frame.filename == filename]
    return lines[-1] if lines else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
