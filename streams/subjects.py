"""From an identifier a person gives (a phone number, an e-mail address...) to their subject.

Used by operators and the privacy office (`hold place --subject-of`, data-subject requests):
the identifier is normalised exactly as the router does, digested with the pseudonym key,
and looked up in the ledger's subject index. It is never stored or logged.
"""

from __future__ import annotations

from processors.identity import (
    SOCIAL_PLATFORMS,
    Identifier,
    customer_reference,
    normalise_email,
    normalise_phone,
    qualify_handle,
)
from processors.pseudonym import Pseudonymiser
from streams.bootstrap import Container
from streams.keys import load_keys
from streams.ledger import SubjectIndex, session_factory


def parse_identifier(text: str) -> Identifier:
    """`phone:…`, `email:…`, `customer:…`, `<platform>:<handle>`, or a bare phone/e-mail."""
    prefix, _, rest = text.partition(":")
    if rest and prefix == "phone":
        return normalise_phone(rest)
    if rest and prefix == "email":
        return normalise_email(rest)
    if rest and prefix == "customer":
        return customer_reference(rest)
    if rest and prefix in SOCIAL_PLATFORMS:
        return qualify_handle(prefix, rest)
    if "@" in text:
        return normalise_email(text)
    return normalise_phone(text)


def subject_of(container: Container, identifier: Identifier) -> str | None:
    """The canonical pseudonym of the subject this identifier belongs to, if known."""
    pseudonymiser = Pseudonymiser(load_keys(container.settings).pseudonym_key)
    digest = pseudonymiser.identifier_digest(identifier)
    with session_factory(container.ledger_engine)() as session:
        return SubjectIndex(session).lookup(digest)
