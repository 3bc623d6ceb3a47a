"""The roles of infra/acl.yaml as values: validation, ACLs, the expected matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from processors.acl import (
    PROBED_OPERATIONS,
    AclPolicyError,
    Check,
    Grant,
    expected_checks,
    grants,
    matrix_cell,
    parse_acl_policy,
    render_matrix,
    summarise,
)
from streams.topics import load_topics

INFRA = Path(__file__).resolve().parents[3] / "infra"
TOPICS = [spec.name for spec in load_topics(INFRA / "topics.yaml").specs]
CHANNELS = ("phone", "chat", "email", "survey", "social")


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return parse_acl_policy(yaml.safe_load((INFRA / "acl.yaml").read_text()), TOPICS)


def _doc(**role: object) -> dict[str, object]:
    return {"version": "1", "roles": {"r": {"description": "test role", **role}}}


def test_the_file_declares_every_role_of_the_issue(policy) -> None:  # type: ignore[no-untyped-def]
    names = {role.name for role in policy.roles}
    assert {f"producer-{c}" for c in CHANNELS} <= names
    backend = {"router", "privacy-app", "retention", "ores-consumer", "coaching-tool"}
    assert backend | {"recording-store", "downstream", "privacy-office", "data-engineer"} <= names


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_producer_writes_its_own_raw_topic_and_nothing_else(  # type: ignore[no-untyped-def]
    policy, channel: str
) -> None:
    role = policy.role(f"producer-{channel}")
    allowed = {(t, op) for t in TOPICS for op in PROBED_OPERATIONS if role.allows(t, t, op)}
    own = f"contact.raw.{channel}.v1"
    assert allowed == {(own, "write"), (own, "describe")}


def test_coaching_reads_comnexio_only(policy) -> None:  # type: ignore[no-untyped-def]
    role = policy.role("coaching-tool")
    assert [t for t in TOPICS if role.allows(t, t, "read")] == ["contact.comnexio.v1"]
    assert not role.allows("contact.restricted.v1", "contact.restricted.v1", "describe")


def test_data_engineer_describes_all_but_reads_dead_letters_only(policy) -> None:  # type: ignore[no-untyped-def]
    role = policy.role("data-engineer")
    assert all(role.allows(t, t, "describe") for t in TOPICS)
    assert [t for t in TOPICS if role.allows(t, t, "read")] == ["contact.deadletter.v1"]
    assert not any(role.allows(t, t, op) for t in TOPICS for op in ("write", "create"))


def test_nobody_creates_declared_topics(policy) -> None:  # type: ignore[no-untyped-def]
    assert not any(role.allows(t, "pfx." + t, "create") for role in policy.roles for t in TOPICS)


def test_only_the_privacy_app_may_cut_and_only_the_request_topic(policy) -> None:  # type: ignore[no-untyped-def]
    """DELETE (DeleteRecords, and deleting the topic) on privacy.requests.v1 for the app
    that takes requests in; on nothing else, for nobody else."""
    cutting = {(g.principal, g.name) for g in grants(policy) if g.operation == "delete"}
    assert cutting == {("User:privacy-app", "privacy.requests.v1")}
    assert policy.role("privacy-app").allows(
        "privacy.requests.v1", "privacy.requests.v1", "describe"
    )


def test_grants_apply_the_deployment_prefix_to_every_name(policy) -> None:  # type: ignore[no-untyped-def]
    """Topics, consumer groups, transactional ids and the privacy app's internal topics are
    all in the deployment's namespace: two deployments on one broker share nothing."""
    bindings = grants(policy, "t1.")
    phone = Grant("User:producer-phone", "topic", "literal", "t1.contact.raw.phone.v1", "write")
    assert phone in bindings
    topic_grants = [g for g in bindings if g.resource_type == "topic" and g.pattern == "literal"]
    assert all(g.name.startswith("t1.") for g in topic_grants)
    router = {g for g in bindings if g.principal == "User:router"}
    assert Grant("User:router", "transactional_id", "prefixed", "t1.contactflow-router-",
                 "write") in router  # fmt: skip
    assert Grant("User:router", "group", "prefixed", "t1.contactflow-router", "read") in router
    faust = Grant("User:privacy-app", "topic", "prefixed", "t1.contactflow-control", "create")
    assert faust in bindings
    wildcard = Grant("User:data-engineer", "group", "literal", "*", "describe")
    assert wildcard in bindings


def test_the_expected_matrix_covers_every_role_topic_and_operation(policy) -> None:  # type: ignore[no-untyped-def]
    rows = expected_checks(policy, TOPICS, "p.")
    assert len(rows) == len(policy.roles) * len(TOPICS) * 4
    assert sum(1 for *_, allowed in rows if allowed) > 0


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"roles": {}}, "version"),
        ({"version": "1", "roles": {}}, "no roles"),
        ({"version": "1", "roles": {"Bad Name": {"description": "x"}}}, "names are lower case"),
        ({"version": "1", "roles": {"admin": {"description": "x"}}}, "not 'admin'"),
        (_doc(topics={"read": ["no.such.topic"]}), "not in infra/topics.yaml: no.such.topic"),
        (_doc(topics={"alter": ["contact.ores.v1"]}), "'topics' takes only"),
        (_doc(groups={"write": ["x"]}), "'groups' takes only"),
        (_doc(colour="blue"), "unknown keys"),
        (_doc(transactional_ids=["bad prefix!"]), "invalid prefix"),
        ({"version": "1", "roles": {"r": {"topics": {}}}}, "description"),
    ],
)
def test_invalid_files_are_refused_with_the_reason(document: object, message: str) -> None:
    with pytest.raises(AclPolicyError, match=message):
        parse_acl_policy(document, TOPICS)


def test_summary_counts_surprises_and_formats_the_final_line() -> None:
    checks = [
        Check("r", "t", "read", expected=True, observed=True),
        Check("r", "t", "write", expected=False, observed=True),
        Check("r", "t", "describe", expected=True, observed=False),
        Check("r", "t", "create", expected=False, observed=False),
    ]
    summary = summarise(checks)
    assert summary.line == "acl_checks=4 unexpected_allows=1 unexpected_denies=1"
    assert not summary.ok
    assert matrix_cell(checks) == "rW-!"
    assert summarise(checks[:1]).ok


def test_the_matrix_has_one_row_per_topic_and_a_numbered_role_legend() -> None:
    checks = [Check("a", "t1", op, op == "read", op == "read") for op in PROBED_OPERATIONS]
    checks += [Check("b", "t1", op, False, False) for op in PROBED_OPERATIONS]
    lines = render_matrix(checks, ["a", "b"], ["t1"])
    assert lines[0] == "roles: 1 a, 2 b"
    assert lines[2].split() == ["t1", "r", "."]
