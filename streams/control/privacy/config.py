"""What the privacy service is configured with: the consumer registry, ORES's standing
instructions, and the policy facts a request needs (its version, who controls each purpose)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processors.consumers import ConsumerRegistry
from processors.privacy import RequestType
from processors.request_intake import request_purposes
from processors.request_scope import purpose_controllers
from streams.bootstrap import Container
from streams.errors import ContactflowError
from streams.sdk.downstream.model import load_registry


@dataclass(frozen=True)
class PrivacyConfig:
    registry: ConsumerRegistry
    standing: frozenset[RequestType]
    policy_version: str
    purpose_controllers: Mapping[str, frozenset[str]]  # who controls what a purpose covers
    grace_days: int
    request_purposes: Mapping[str, frozenset[str]]  # what a request may name


def standing_instructions(text: str) -> frozenset[RequestType]:
    """`erasure,restriction` -> those request types; a clear error on an unknown one."""
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - {t.value for t in RequestType})
    if unknown:
        raise ContactflowError(
            f"privacy_standing_instructions: unknown request types {unknown}; "
            f"known: {', '.join(RequestType)}"
        )
    return frozenset(RequestType(n) for n in names)


def load_privacy_config(container: Container) -> PrivacyConfig:
    from streams.router.worker import load_policy

    policy = load_policy(container)
    return PrivacyConfig(
        registry=load_registry(container),
        standing=standing_instructions(container.settings.privacy_standing_instructions),
        policy_version=policy.version,
        purpose_controllers=purpose_controllers(policy),
        grace_days=policy.release_grace_days,
        request_purposes=request_purposes(policy),
    )
