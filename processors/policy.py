"""Controller attribution: which rule of the versioned policy governs a contact event.

`parse_policy` validates a policy document (as loaded from `infra/policy.yaml`) and
refuses a bad one with the path of the problem. `attribute_controller` returns the
governing `Attribution`, or None when no rule matches: the caller quarantines the event,
a controller is never guessed. `Decisions` remembers both decisions per contact facts for
callers that ask once per event.

Derived purposes (`derived_purposes` in the document, e.g. `reporting`) are processing
computed from events tagged for another purpose, never produced for: no rule names them.
Each has its controller, processor and legal basis like a rule, and rests on a basis a
person may object to (GDPR Art. 21): the router marks an objector's events instead of
withholding them (`processors.routing.excluded_purposes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

CONTROLLERS = frozenset({"ORES", "COMNEXIO"})
LEGAL_BASES = frozenset(
    {"contract", "legal_obligation", "legitimate_interest", "consent", "public_task",
     "vital_interests"}
)  # fmt: skip
OBJECTABLE_BASES = frozenset({"legitimate_interest", "public_task"})  # GDPR Art. 21(1)
MATCH_KEYS = ("client", "service", "purpose", "channel", "kind")
HOLD_REASONS = ("complaint", "fraud", "dispute", "litigation", "authority_request")
FactsKey = tuple[str, str, str, str, str]  # ContactFacts as a tuple, in MATCH_KEYS order
_MAX_REMEMBERED: Final = 10_000


class PolicyError(ValueError):
    """The policy document is invalid; the message gives the path of the problem."""


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """What the policy looks at: who the contact is for, why, and how it came in."""

    client: str
    service: str
    purpose: str
    channel: str
    kind: str


@dataclass(frozen=True, slots=True)
class Attribution:
    """The governance decision for an event, carried in its tagged form."""

    rule: str
    controller: str
    processor: str | None
    purpose: str
    legal_basis: str
    retention_class: str
    policy_version: str


@dataclass(frozen=True, slots=True)
class RetentionClass:
    name: str
    recording_period_days: int | None


@dataclass(frozen=True)
class Rule:
    name: str
    match: Mapping[str, frozenset[str]]
    controller: str
    processor: str | None
    legal_basis: str
    retention_class: str

    def fits(self, facts: ContactFacts) -> bool:
        return all(getattr(facts, key) in allowed for key, allowed in self.match.items())


@dataclass(frozen=True)
class HoldSignal:
    """Contacts matching `match` signal a legal hold for `reason`."""

    reason: str
    match: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class DerivedPurpose:
    """Processing computed from events tagged for the purposes in `derived_from`."""

    name: str
    description: str
    derived_from: frozenset[str]
    controller: str
    processor: str | None
    legal_basis: str


@dataclass(frozen=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]
    retention_classes: Mapping[str, RetentionClass]
    hold_signals: tuple[HoldSignal, ...] = ()
    release_grace_days: int = 7
    derived_purposes: tuple[DerivedPurpose, ...] = ()

    @property
    def derived_purpose_names(self) -> frozenset[str]:
        return frozenset(derived.name for derived in self.derived_purposes)


def attribute_controller(policy: Policy, facts: ContactFacts) -> Attribution | None:
    """The first rule fitting `facts`, as an Attribution; None means quarantine."""
    for rule in policy.rules:
        if rule.fits(facts):
            return Attribution(
                rule=rule.name,
                controller=rule.controller,
                processor=rule.processor,
                purpose=facts.purpose,
                legal_basis=rule.legal_basis,
                retention_class=rule.retention_class,
                policy_version=policy.version,
            )
    return None


def hold_signal_of(policy: Policy, facts: ContactFacts) -> str | None:
    """The hold reason a contact signals (a complaint, a fraud attempt...), if any."""
    for signal in policy.hold_signals:
        if all(getattr(facts, key) in allowed for key, allowed in signal.match.items()):
            return signal.reason
    return None


class Decisions:
    """`attribute_controller` and `hold_signal_of` of one policy, remembered per contact
    facts: callers that ask once per event meet the same few combinations again and again.
    At most `_MAX_REMEMBERED` are kept; facts past that are decided each time."""

    __slots__ = ("_known", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._known: dict[FactsKey, tuple[Attribution | None, str | None]] = {}

    def __call__(self, key: FactsKey) -> tuple[Attribution | None, str | None]:
        """(attribution or None, hold reason or None) of (client, service, purpose,
        channel, kind)."""
        decision = self._known.get(key)
        if decision is None:
            facts, policy = ContactFacts(*key), self.policy
            decision = (attribute_controller(policy, facts), hold_signal_of(policy, facts))
            if len(self._known) < _MAX_REMEMBERED:
                self._known[key] = decision
        return decision


def parse_policy(document: Any) -> Policy:
    """Validate a loaded policy document; raise PolicyError naming the first problem."""
    if not isinstance(document, Mapping):
        raise PolicyError("policy: expected a mapping")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError("policy.version: a non-empty string is required")
    classes = _parse_classes(document.get("retention_classes"))
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise PolicyError("policy.rules: a non-empty list is required")
    rules = tuple(_parse_rule(raw, i, classes) for i, raw in enumerate(raw_rules))
    names = [rule.name for rule in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PolicyError(f"policy.rules: duplicate rule names {duplicates}")
    signals = _parse_signals(document.get("hold_signals") or {})
    grace = document.get("release_grace_days", 7)
    if not _positive_int(grace):
        raise PolicyError("policy.release_grace_days: a positive integer is required")
    derived = _parse_derived(document.get("derived_purposes") or {}, rules)
    return Policy(version.strip(), rules, classes, signals, grace, derived)


_DERIVED_KEYS: Final = frozenset({"description", "derived_from", "controller", "processor",
                                  "legal_basis"})  # fmt: skip


def _parse_derived(raw: Any, rules: tuple[Rule, ...]) -> tuple[DerivedPurpose, ...]:
    if not isinstance(raw, Mapping):
        raise PolicyError("policy.derived_purposes: a mapping of purpose to its governance")
    produced = frozenset(p for rule in rules for p in rule.match.get("purpose", ()))
    return tuple(_parse_derived_purpose(name, body, produced) for name, body in raw.items())


def _parse_derived_purpose(name: Any, raw: Any, produced: frozenset[str]) -> DerivedPurpose:
    where = f"policy.derived_purposes.{name}"
    if not isinstance(name, str) or not name.strip():
        raise PolicyError("policy.derived_purposes: purpose names must be non-empty strings")
    if name in produced:
        raise PolicyError(f"{where}: already a purpose events are produced for (a rule's)")
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    unknown = set(raw) - _DERIVED_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise PolicyError(f"{where}.description: a non-empty string is required")
    sources = raw.get("derived_from")
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(source, str) and source in produced for source in sources)
    ):
        raise PolicyError(
            f"{where}.derived_from: a non-empty list of rule purposes is required "
            f"({', '.join(sorted(produced))})"
        )
    controller, processor = raw.get("controller"), raw.get("processor")
    if controller not in CONTROLLERS:
        raise PolicyError(f"{where}.controller: must be one of {sorted(CONTROLLERS)}")
    if processor is not None and (processor not in CONTROLLERS or processor == controller):
        raise PolicyError(f"{where}.processor: null or the other party is required")
    basis = raw.get("legal_basis")
    if basis not in OBJECTABLE_BASES:
        raise PolicyError(
            f"{where}.legal_basis: must be one of {sorted(OBJECTABLE_BASES)}: a person may "
            "object to a derived purpose (GDPR Art. 21) and the router marks their events"
        )
    return DerivedPurpose(name, description.strip(), frozenset(sources), controller,
                          processor, basis)  # fmt: skip


def _parse_signals(raw: Any) -> tuple[HoldSignal, ...]:
    if not isinstance(raw, Mapping):
        raise PolicyError("policy.hold_signals: a mapping of reason to match is required")
    signals = []
    for reason, match in raw.items():
        if reason not in HOLD_REASONS:
            raise PolicyError(
                f"policy.hold_signals.{reason}: unknown reason, use one of {HOLD_REASONS}"
            )
        signals.append(HoldSignal(reason, _parse_match(match, f"policy.hold_signals.{reason}")))
    return tuple(signals)


def _parse_classes(raw: Any) -> dict[str, RetentionClass]:
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError("policy.retention_classes: a non-empty mapping is required")
    classes = {}
    for name, body in raw.items():
        days = (body or {}).get("recording_period_days") if isinstance(body, Mapping) else None
        if not isinstance(body, Mapping) or not (days is None or _positive_int(days)):
            raise PolicyError(
                f"policy.retention_classes.{name}.recording_period_days: "
                "a positive integer or null is required"
            )
        classes[str(name)] = RetentionClass(str(name), days)
    return classes


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_rule(raw: Any, index: int, classes: Mapping[str, RetentionClass]) -> Rule:
    where = f"policy.rules[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    unknown = set(raw) - {"name", "match", "controller", "processor", "legal_basis",
                          "retention_class"}  # fmt: skip
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name: a non-empty string is required")
    where = f"policy.rules[{index}] ({name})"
    match = _parse_match(raw.get("match"), where)
    controller = raw.get("controller")
    if controller not in CONTROLLERS:
        raise PolicyError(f"{where}.controller: must be one of {sorted(CONTROLLERS)}")
    processor = raw.get("processor")
    if processor is not None and (processor not in CONTROLLERS or processor == controller):
        raise PolicyError(f"{where}.processor: null or the other party is required")
    if raw.get("legal_basis") not in LEGAL_BASES:
        raise PolicyError(f"{where}.legal_basis: must be one of {sorted(LEGAL_BASES)}")
    if raw.get("retention_class") not in classes:
        raise PolicyError(f"{where}.retention_class: must be one of {sorted(classes)}")
    return Rule(name, match, controller, processor, raw["legal_basis"], raw["retention_class"])


def _parse_match(raw: Any, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError(f"{where}.match: a non-empty mapping is required")
    match = {}
    for key, value in raw.items():
        if key not in MATCH_KEYS:
            raise PolicyError(f"{where}.match.{key}: unknown key, use one of {MATCH_KEYS}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise PolicyError(f"{where}.match.{key}: a string or a list of strings is required")
        match[key] = frozenset(values)
    return match
