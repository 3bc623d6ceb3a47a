"""What a data-subject request must hold to be taken in, from the CLI or privacy.requests.v1.

- Receipt time (`received_at`, from which the one-month deadline runs): no more than
  `MAX_RECEIPT_AGE_MONTHS` (3) calendar months ago, the longest time the law allows to
  answer (one month, extended by at most two, GDPR Art. 12(3)). An older receipt cannot be
  answered lawfully whatever is done, and is far likelier a mistyped year than a letter;
  a late letter inside the window is taken and shows as overdue. Not in the future beyond
  `RECEIPT_CLOCK_SKEW` (5 minutes: two systems' clocks); a time within it is taken as now
  (the earlier date, so the earlier deadline).
- Purpose (objection, consent withdrawal): one the policy knows. An objection names a
  purpose events are produced for (a policy rule's purpose), a derived purpose of the
  policy (`reporting`: it rests on a legitimate interest, GDPR Art. 21) or direct
  marketing, the notice's absolute right (§7); a consent withdrawal may name a rule's
  purpose, direct marketing or a service of the policy (the SMS/NPS survey,
  `satisfaction_survey`, is what a person consents to), not a derived purpose: none
  rests on consent.
- The request id is required on the topic (the DPO's file number): none is made up.
- Bounded sizes: at most `MAX_IDENTIFIERS` identifiers, a reason of at most
  `REQUEST_REASON_LIMIT` characters (identifier values are bounded in `identity`).

Refusals name the field and the rule, never the value: they reach dead letters and logs.
The receipt rule lives with the state machine (`processors.privacy.check_receipt`, which
`submit` applies) and is re-exported here; platforms are `identity.SOCIAL_PLATFORMS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from processors.policy import Policy
from processors.privacy import (
    ABSOLUTE_OBJECTION_PURPOSES,
    MAX_RECEIPT_AGE_MONTHS,
    REASON_LIMIT,
    RECEIPT_CLOCK_SKEW,
    RequestRefused,
    RequestType,
    check_receipt,
)

__all__ = [
    "MAX_IDENTIFIERS", "MAX_RECEIPT_AGE_MONTHS", "RECEIPT_CLOCK_SKEW", "REQUEST_REASON_LIMIT",
    "RequestRefused", "check_identifier_count", "check_purpose", "check_reason",
    "check_receipt", "check_request_id", "request_purposes",
]  # fmt: skip

MAX_IDENTIFIERS = 50
REQUEST_REASON_LIMIT = REASON_LIMIT


def request_purposes(policy: Policy) -> dict[str, frozenset[str]]:
    """The purposes each request type may name (keyed by its value), from the policy."""
    purposes = frozenset(p for rule in policy.rules for p in rule.match.get("purpose", ()))
    services = frozenset(s for rule in policy.rules for s in rule.match.get("service", ()))
    produced = purposes | ABSOLUTE_OBJECTION_PURPOSES
    return {RequestType.OBJECTION: produced | policy.derived_purpose_names,
            RequestType.CONSENT_WITHDRAWAL: produced | services}  # fmt: skip


def check_purpose(
    request_type: RequestType | str,
    purpose: str | None,
    known: Mapping[str, frozenset[str]],
) -> None:
    """`RequestRefused` unless `purpose` is None or one `request_type` may name."""
    if purpose is None:
        return
    allowed = known.get(request_type, frozenset())  # keyed by request type (a StrEnum)
    if purpose not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise RequestRefused("purpose", f"not a purpose of the policy for this request: {names}")


def check_request_id(request_id: str) -> None:
    """A request id must be given (it names the request everywhere after)."""
    if not request_id.strip():
        raise RequestRefused("request_id", "empty: the request's id (the DPO file number)")


def check_reason(reason: str | None) -> None:
    if reason is not None and len(reason) > REQUEST_REASON_LIMIT:
        raise RequestRefused("reason", f"longer than {REQUEST_REASON_LIMIT} characters")


def check_identifier_count(count: int) -> None:
    if count > MAX_IDENTIFIERS:
        raise RequestRefused("identifiers", f"at most {MAX_IDENTIFIERS} in one request")
