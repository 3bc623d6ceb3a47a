"""Whose processing a data-subject request reaches, decided from values only.

- **Who controls what a purpose covers** (`purpose_controllers`): the policy's rules say
  which controller each purpose (or service) of a contact is processed for: COMNEXIO for
  what it re-listens to coach and train its staff, ORES for contact handling; its derived
  purposes name their own (ORES for the contact centre's reporting).
- **A request about future processing** (objection, consent withdrawal, restriction) holds
  whether or not data exists yet. An objection or a consent withdrawal naming a purpose of
  the policy concerns that purpose's controller, and only it: COMNEXIO applies an
  objection to coaching at once, with nothing for ORES to decide, even for a person whose
  only contacts so far were ORES's. A restriction concerns the controllers holding the
  person's data.
- **A person never seen**: a request about future processing still needs a subject to
  carry the state, so one is made from the request's identifiers (digests only), as the
  router would have made it; the person's first event then finds it and its state.
  Requests about existing data (erasure, access, portability, rectification, lifting a
  restriction) of a person never seen have nothing to act on.
- **No controller on record** (a subject found only in quarantine, or made for the
  request): ORES is taken as controller, the notice's default for contact handling, and
  the evidence says it was inferred.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from processors.policy import Policy
from processors.privacy import RequestType

DEFAULT_CONTROLLER = "ORES"
PROSPECTIVE = frozenset(
    {RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL, RequestType.RESTRICTION}
)


@dataclass(frozen=True, slots=True)
class Scope:
    """The controllers a request concerns; `inferred`: none was on record, the default was
    taken; `new_subject`: a subject must be made from the request's identifiers."""

    controllers: frozenset[str]
    inferred: bool = False
    new_subject: bool = False


def purpose_controllers(policy: Policy) -> dict[str, frozenset[str]]:
    """Purpose or service named by a policy rule, or derived purpose of the policy -> the
    controllers it is processed for."""
    owners: dict[str, set[str]] = {}
    for rule in policy.rules:
        for name in (*rule.match.get("purpose", ()), *rule.match.get("service", ())):
            owners.setdefault(name, set()).add(rule.controller)
    for derived in policy.derived_purposes:
        owners.setdefault(derived.name, set()).add(derived.controller)
    return {name: frozenset(controllers) for name, controllers in owners.items()}


def request_scope(
    request_type: RequestType,
    purpose: str | None,
    found: bool,
    holding: Collection[str],
    controllers_of: Mapping[str, frozenset[str]],
) -> Scope:
    """Whose processing the request reaches.

    `found`: some identifier of the request names a subject; `holding`: the controllers
    their data is on record for; `controllers_of`: `purpose_controllers` of the policy.
    An empty scope means nothing to act on."""
    prospective = request_type in PROSPECTIVE
    if not found and not prospective:
        return Scope(frozenset())
    new_subject = not found
    owners = controllers_of.get(purpose, frozenset()) if purpose is not None else frozenset()
    if owners and request_type in {RequestType.OBJECTION, RequestType.CONSENT_WITHDRAWAL}:
        return Scope(owners, new_subject=new_subject)
    if holding:
        return Scope(frozenset(holding), new_subject=new_subject)
    return Scope(frozenset({DEFAULT_CONTROLLER}), inferred=True, new_subject=new_subject)
