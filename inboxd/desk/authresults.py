"""Whether an agent's mail really came from the agent: the receiving server's Authentication-Results.

Commands by mail change tickets, and a From header is trivial to forge.  So
an agent's commands run only when the desk's own receiving server vouched
for the sender, in the `Authentication-Results` header (RFC 8601) it added.
`check` answers that one question, with the reason, and writes nothing.

The rule (docs/practices/mailcommands.md says it for admins):

* Only headers whose authserv-id is one the admin named (`[agent_mail]
  authserv_id`) count.  Any other header may have been written by the
  sender, so it is ignored, whatever it says.  (RFC 8601 section 5: the
  receiving server removes headers that claim its own id from incoming
  mail; the admin's server must do so.)
* The mail passes when, in those headers, `dmarc=pass` names the From
  domain (header.from), or `dkim=pass` signed for the From domain
  (header.d, or the domain of header.i), or `spf=pass` checked the From
  domain (smtp.mailfrom's domain).  "Names the From domain" is DMARC's
  relaxed alignment without the public suffix list: the same domain, or
  one is a subdomain of the other and the shorter has at least two labels.
* `dmarc=fail` for the From domain refuses the mail whatever else passed:
  the domain's owner said such mail is not theirs.
* A header the parser (the `authres` package) cannot read is ignored.

Microsoft 365 writes its Authentication-Results without an authserv-id,
so its verdicts cannot be told from a forged header's: such a header never
counts (see the practice note for what an M365 desk can do instead).
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import authres

from inboxd.mail.largemail import header_block

# The result names of DMARC as checkers write them (OpenDMARC calls itself "opendmarc" in older versions).
_DMARC = ("dmarc", "opendmarc")


@dataclass(frozen=True)
class Trust:
    trusted: bool
    reason: str


def headers_of(raw: bytes) -> list[str]:
    """The values of every Authentication-Results header of a raw mail, top (newest) first."""
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block(raw))
    return [" ".join(str(v).split()) for v in head.get_all("Authentication-Results") or ()]


def check(values: Iterable[str], sender: str, authserv_ids: Sequence[str]) -> Trust:
    """Whether the headers `values` from the trusted `authserv_ids` show that `sender`'s domain sent the mail."""
    ids = {i.lower() for i in authserv_ids}
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not domain:
        return Trust(False, "the mail has no sender address")
    passed: list[str] = []
    seen = others = 0
    for value in values:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except Exception:  # noqa: BLE001 - authres raises its own SyntaxError and others for any malformed header
            continue
        if (header.authserv_id or "").lower() not in ids:
            others += 1
            continue
        seen += 1
        for result in header.results:
            method, outcome = (result.method or "").lower(), (result.result or "").lower()
            props = {f"{p.type}.{p.name}".lower(): (p.value or "") for p in result.properties}
            if method in _DMARC:
                aligned = _aligned(props.get("header.from", domain), domain)
                if outcome == "fail" and aligned:
                    return Trust(False, f"{header.authserv_id} says dmarc=fail for {domain}")
                if outcome == "pass" and aligned:
                    passed.append("dmarc=pass")
            elif method == "dkim" and outcome == "pass":
                signer = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
                if signer and _aligned(signer, domain):
                    passed.append(f"dkim=pass for {signer.lower()}")
            elif method == "spf" and outcome == "pass":
                checked = props.get("smtp.mailfrom", "").rpartition("@")[2]
                if checked and _aligned(checked, domain):
                    passed.append(f"spf=pass for {checked.lower()}")
    if passed:
        return Trust(True, f"{', '.join(dict.fromkeys(passed))} from {'/'.join(sorted(ids))}")
    if seen:
        return Trust(False, f"the Authentication-Results of {'/'.join(sorted(ids))} show no pass for {domain}"
                            " (dmarc, or dkim or spf of that domain)")
    if others:
        return Trust(False, f"no Authentication-Results from {'/'.join(sorted(ids))}; headers from other"
                            " servers are not trusted (anyone can write them)")
    return Trust(False, f"no Authentication-Results from {'/'.join(sorted(ids))}")


def _aligned(a: str, b: str) -> bool:
    """DMARC's relaxed alignment, without the public suffix list (see the module's docstring)."""
    a, b = a.lower().strip().rstrip("."), b.lower().strip().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.endswith("." + short) and short.count(".") >= 1


__all__ = ["Trust", "check", "headers_of"]
