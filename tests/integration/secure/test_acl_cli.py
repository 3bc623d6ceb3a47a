"""`contactflow acl apply | verify` as an operator runs them, on the secured broker."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from typer.testing import CliRunner

from schemas.topic_names import DECLARED
from streams.cli import app

pytestmark = pytest.mark.integration
FINAL = re.compile(r"^acl_checks=(\d+) unexpected_allows=(\d+) unexpected_denies=(\d+)$")


def _run(secure, tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=secure.env(None, tmp_path / "cli"))


def _final_line(output: str) -> tuple[int, int, int]:
    match = FINAL.match(output.strip().splitlines()[-1])
    assert match, output[-2000:]
    checks, allows, denies = (int(g) for g in match.groups())
    return checks, allows, denies


def test_apply_again_has_nothing_to_do(secure, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dry = _run(secure, tmp_path, "acl", "apply", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "acl: nothing to do" in dry.output
    env = secure.env(None, tmp_path / "cli")
    env.pop("CONTACTFLOW_ACL_SECRETS_DIR")
    early = CliRunner().invoke(app, ["acl", "apply", "--dry-run"], env=env)
    assert early.exit_code == 0, early.output
    assert "no password configured yet for: producer-phone" in early.output
    refused = CliRunner().invoke(app, ["acl", "apply"], env=env)
    assert "CONTACTFLOW_ACL_PASSWORD_PRODUCER_PHONE" in str(refused.exception)
    again = _run(secure, tmp_path, "acl", "apply")
    assert again.exit_code == 0, again.output
    assert "acl: nothing to do, the broker matches infra/acl.yaml" in again.output


def test_verify_ends_with_no_surprise(secure, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = _run(secure, tmp_path, "acl", "verify")
    secure.timings["acl_verify_s"] = time.monotonic() - started
    assert result.exit_code == 0, result.output
    topics, roles = len(DECLARED), len(secure.policy.roles)
    assert _final_line(result.output) == (topics * roles * 4, 0, 0)
    assert "contact.raw.phone.v1" in result.output
    assert "1 producer-phone" in result.output
    print(f"secure timings: {secure.timings}; {result.output.strip().splitlines()[-1]}")


def test_a_grant_made_by_hand_is_caught_by_verify_and_removed_by_apply(  # type: ignore[no-untyped-def]
    secure, as_role, tmp_path: Path
) -> None:
    admin_root = as_role(None)
    admin = admin_root.admin()
    leak = AclBinding(
        ResourceType.TOPIC, admin_root.topics.name("contact.ores.v1"),
        ResourcePatternType.LITERAL, "User:coaching-tool", "*", AclOperation.READ,
        AclPermissionType.ALLOW,
    )  # fmt: skip
    admin.create_acls([leak])[leak].result()
    time.sleep(0.5)  # the authoriser learns it from the metadata log
    caught = _run(secure, tmp_path, "acl", "verify")
    assert caught.exit_code == 1, caught.output
    _, allows, denies = _final_line(caught.output)
    assert (allows, denies) == (2, 0), "read and describe of contact.ores.v1 by coaching"
    assert "R!" in caught.output or "RD!" in caught.output

    plan = _run(secure, tmp_path, "acl", "apply", "--dry-run")
    assert "~ remove-acl User:coaching-tool allow read topic literal:" in plan.output, plan.output
    assert "1 change(s) planned (dry run, nothing applied)" in plan.output
    fixed = _run(secure, tmp_path, "acl", "apply")
    assert fixed.exit_code == 0, fixed.output
    assert "- remove-acl User:coaching-tool" in fixed.output
    assert _run(secure, tmp_path, "acl", "apply").output.startswith("acl: nothing to do")
