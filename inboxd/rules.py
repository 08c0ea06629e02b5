"""Decide whether inboxd may send an automatic reply (acknowledgement) to one inbound mail.

Each rule answers one question about the mail, has no side effects and, when
it objects, returns the reason as a sentence (GNU Mailman's rules work the
same way).  ``may_auto_reply`` runs them in order and the first objection
decides.  The header rules catch honest automatic mail; the budget at the
end holds even when every header lies, so two autoresponders can never
answer each other for ever: per address (whatever its +tag or case), and
per domain unless the domain is a shared mail provider.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from inboxd.message import Address, InboundMessage

__all__ = [
    "AUTO_REPLY_RULES",
    "AckContext",
    "Verdict",
    "is_automatic",
    "is_our_message_id",
    "loop_header_value",
    "may_auto_reply",
]


@dataclass(frozen=True)
class AckContext:
    own_addresses: frozenset[str]        # lowercased: every mailbox address and agent email
    own_domains_for_ids: frozenset[str]  # domains of our mailboxes; our Message-IDs look like "<inboxd.…@domain>"
    loop_header_value: str               # our X-Inboxd-Loop value for this installation
    sent_last_hour: int                  # auto-replies already sent to this sender address (any +tag, any
                                         # case: inboxd.outbox.budget_key) in the last hour
    sent_last_day: int                   # ... in the last 24 h
    budget_per_hour: int
    budget_per_day: int
    sender_bouncing: bool = False        # the customer's address bounced for good, and the mark is in force
    domain: str = ""                     # the sender's domain
    sent_domain_last_minute: int = 0     # auto-replies sent to any address at that domain in the last minute
    sent_domain_last_hour: int = 0       # ... in the last hour
    budget_domain_per_minute: int | None = None  # None: no per-domain ceiling (a shared mail provider)
    budget_domain_per_hour: int | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str    # name of the deciding rule ("" when allowed)
    reason: str  # human sentence, e.g. 'Precedence is "bulk"'


Rule = Callable[[InboundMessage, AckContext], str | None]
HeaderRule = Callable[[InboundMessage, AckContext | None], str | None]

# RFC 3834 and the de-facto Precedence values of lists and autoresponders.
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_SUPPRESS_TOKENS = frozenset({"all", "autoreply", "oof"})
_SPLIT = re.compile(r"[\s,;]+")
_MAIL_SYSTEM = frozenset({"mailer-daemon", "postmaster"})
# "noreply" anywhere in a local part is never a person; "bounces" and
# "notifications" only as the first word (bounces+verp@, notifications-x@).
_NOREPLY = re.compile(
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|^(?:bounces?|notifications?)(?:$|[-+_.])", re.I)


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _reply_targets(msg: InboundMessage) -> list[Address]:
    """The addresses an acknowledgement would concern: the sender and where replies go."""
    return ([msg.from_] if msg.from_ is not None else []) + list(msg.reply_to)


def loop_header_value(address: str) -> str:
    """Our X-Inboxd-Loop value for the mailbox `address`, e.g. "inboxd; support@example.com"."""
    return f"inboxd; {address.strip().lower()}"


def is_our_message_id(message_id: str, own_domains: frozenset[str]) -> bool:
    """Whether `message_id` (with or without <>) is one inboxd generated: "inboxd.…@<our domain>"."""
    value = message_id.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    return bool(at) and local.lower().startswith("inboxd.") and domain.lower() in own_domains


# ---------------------------------------------------------------------------
# Rules.  Header rules ignore the context, so is_automatic can run them alone.
# ---------------------------------------------------------------------------

def no_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if not _reply_targets(msg):
        return "the mail has no sender address to reply to"
    return None


def auto_submitted(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.auto_submitted
    # RFC 3834: any value other than "no" (parameters allowed) marks automatic mail.
    if value is not None and value.split(";", 1)[0].strip() not in ("no", ""):
        return f'Auto-Submitted is "{value}"'
    return None


def precedence(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.precedence
    if value is not None and value in _BULK_PRECEDENCE:
        return f'Precedence is "{value}"'
    return None


def mailing_list(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.list_id is not None:
        return f'List-Id is "{msg.auto.list_id}"'
    if msg.auto.list_unsubscribe:
        return "List-Unsubscribe is present"
    return None


def auto_response_suppress(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    value = msg.auto.auto_response_suppress
    if value is None:
        return None
    tokens = {token.lower() for token in _SPLIT.split(value) if token}
    if tokens & _SUPPRESS_TOKENS:
        return f'X-Auto-Response-Suppress is "{value}"'
    return None


def mailer_daemon(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.return_path == "":
        return "the return path is null (<>)"
    candidates = [(a.email, "sender") for a in _reply_targets(msg)]
    if msg.auto.return_path:
        candidates.append((msg.auto.return_path, "return path"))
    for address, role in candidates:
        if _local_part(address).lower() in _MAIL_SYSTEM:
            return f"the {role} {address} is the mail system"
    return None


def noreply_sender(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    for address in _reply_targets(msg):
        if _NOREPLY.search(_local_part(address.email)):
            return f"the sender {address.email} does not take replies"
    return None


def loop_header(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    # Any value counts: another inboxd installation is a loop partner too.
    if msg.auto.loop is not None:
        return f'X-Inboxd-Loop is "{msg.auto.loop}"'
    return None


def delivery_status(msg: InboundMessage, ctx: AckContext | None = None) -> str | None:
    if msg.auto.delivery_status:
        return "the mail is a delivery status report"
    return None


def own_address(msg: InboundMessage, ctx: AckContext) -> str | None:
    for address in _reply_targets(msg):
        if address.email.lower() in ctx.own_addresses:
            return f"the sender {address.email} is one of our own addresses"
    return None


def own_message_id(msg: InboundMessage, ctx: AckContext) -> str | None:
    # Only the mail's own id: a customer's reply to our acknowledgement has
    # our id in In-Reply-To and References, and deserves an answer.
    if msg.message_id and is_our_message_id(msg.message_id, ctx.own_domains_for_ids):
        return f"the Message-ID <{msg.message_id}> is ours: our own mail came back"
    return None


def sender_bouncing(msg: InboundMessage, ctx: AckContext) -> str | None:
    if ctx.sender_bouncing:
        return "the sender's address bounced before"
    return None


def budget(msg: InboundMessage, ctx: AckContext) -> str | None:
    if ctx.sent_last_hour >= ctx.budget_per_hour:
        return (f"{ctx.sent_last_hour} auto-replies went to this address in the last hour "
                f"(budget {ctx.budget_per_hour})")
    if ctx.sent_last_day >= ctx.budget_per_day:
        return (f"{ctx.sent_last_day} auto-replies went to this address in the last 24 hours "
                f"(budget {ctx.budget_per_day})")
    # An autoresponder that answers from ever new addresses at one domain.
    if ctx.budget_domain_per_minute is not None and ctx.sent_domain_last_minute >= ctx.budget_domain_per_minute:
        return (f"{ctx.sent_domain_last_minute} auto-replies went to addresses at {ctx.domain} in the last minute "
                f"(ceiling {ctx.budget_domain_per_minute} per domain)")
    if ctx.budget_domain_per_hour is not None and ctx.sent_domain_last_hour >= ctx.budget_domain_per_hour:
        return (f"{ctx.sent_domain_last_hour} auto-replies went to addresses at {ctx.domain} in the last hour "
                f"(ceiling {ctx.budget_domain_per_hour} per domain)")
    return None


# The rules that read only the mail's headers, in the order they are tried.
_HEADER_RULES: tuple[HeaderRule, ...] = (
    auto_submitted,
    precedence,
    mailing_list,
    auto_response_suppress,
    mailer_daemon,
    noreply_sender,
    loop_header,
    delivery_status,
)

AUTO_REPLY_RULES: tuple[Rule, ...] = (
    no_sender,
    *_HEADER_RULES,
    own_address,
    own_message_id,
    sender_bouncing,
    budget,
)


def is_automatic(msg: InboundMessage) -> str | None:
    """Why the mail is machine-generated according to its headers, or None."""
    for rule in _HEADER_RULES:
        reason = rule(msg, None)
        if reason is not None:
            return reason
    return None


def may_auto_reply(msg: InboundMessage, ctx: AckContext) -> Verdict:
    """Run AUTO_REPLY_RULES in order; the first objection refuses, with its rule name and reason."""
    for rule in AUTO_REPLY_RULES:
        reason = rule(msg, ctx)
        if reason is not None:
            return Verdict(False, rule.__name__, reason)
    return Verdict(True, "", "")
