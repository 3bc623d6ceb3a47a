"""`contactflow acl apply | verify | list`: need to know on the broker (infra/acl.yaml)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from processors.acl import render_matrix, summarise
from streams.bootstrap import Container
from streams.cli._app import app, console, container, kafka_container

acl_app = typer.Typer(help="Roles and ACLs as code (infra/acl.yaml).", no_args_is_help=True)
app.add_typer(acl_app, name="acl")


def _policy(root: Container):  # type: ignore[no-untyped-def]
    from streams.ops.acl import load_acl_policy

    return load_acl_policy(root.settings.infra_dir / "acl.yaml", root.topics)


@acl_app.command("apply")
def acl_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    generate_missing: Annotated[
        bool,
        typer.Option(
            "--generate-missing",
            help="Write a random password file in CONTACTFLOW_ACL_SECRETS_DIR for each role "
            "that has none (local use).",
        ),
    ] = False,
) -> None:
    """Create the roles' SCRAM users and exactly their ACLs; idempotent. Connect as admin."""
    from streams.ops.acl.apply import apply_access, plan_access, require_admin_login
    from streams.ops.acl.credentials import generate_missing as write_missing
    from streams.ops.acl.credentials import require_passwords, role_password

    root = kafka_container()
    policy = _policy(root)
    if generate_missing and not dry_run:
        written = write_missing(root.settings, policy.roles)
        if written:
            console.print(
                f"wrote {len(written)} password file(s) in {root.settings.acl_secrets_dir}: "
                + ", ".join(written)
            )
    if dry_run:  # a plan may be shown before the passwords exist
        found = {role.name: role_password(root.settings, role) for role in policy.roles}
        passwords = {name: value for name, value in found.items() if value is not None}
        if len(passwords) < len(found):
            console.print(
                "no password configured yet for: "
                + ", ".join(name for name, value in found.items() if value is None)
            )
    else:
        passwords = require_passwords(root.settings, policy.roles)
    require_admin_login(root.settings)
    admin = root.admin()
    started = time.monotonic()
    plan = plan_access(admin, root.settings, policy, passwords)
    if plan.empty:
        console.print(
            f"acl: nothing to do, the broker matches infra/acl.yaml {policy.version} "
            f"({len(policy.roles)} roles)",
            highlight=False,
        )
        return
    for change in plan.changes:
        mark = "~" if dry_run else ("-" if change.action == "remove-acl" else "+")
        console.print(f"{mark} {change}", highlight=False, markup=False)
    if dry_run:
        console.print(f"{len(plan.changes)} change(s) planned (dry run, nothing applied)")
        return
    applied = apply_access(admin, root.settings, plan, passwords)
    console.print(
        f"applied {len(applied)} change(s) in {time.monotonic() - started:.1f}s "
        f"(infra/acl.yaml {policy.version})"
    )


@acl_app.command("verify")
def acl_verify() -> None:
    """Try every role on every topic (read, write, describe, create) on the real broker,
    print the matrix and `acl_checks=<n> unexpected_allows=<a> unexpected_denies=<d>`;
    exit 1 unless both counts are 0. Connect as admin; the roles' passwords are needed."""
    from streams.ops.acl.apply import require_admin_login, require_role_logins
    from streams.ops.acl.credentials import require_passwords
    from streams.ops.acl.verify import verify_access

    root = kafka_container()
    policy = _policy(root)
    passwords = require_passwords(root.settings, policy.roles)
    logical = [spec.name for spec in root.topics.specs]
    started = time.monotonic()
    require_admin_login(root.settings)
    require_role_logins(root.settings, passwords)
    checks = verify_access(root.admin(), root.settings, policy, logical, passwords)
    for line in render_matrix(checks, [r.name for r in policy.roles], logical):
        console.print(line, highlight=False, markup=False)
    console.print(
        "cells: r read, w write, d describe, c create; upper case = allowed but not in the "
        "file, '-' = in the file but denied, '!' marks such a cell; "
        f"{time.monotonic() - started:.1f}s",
        highlight=False,
    )
    summary = summarise(checks)
    console.print(summary.line, highlight=False, markup=False)
    if not summary.ok:
        raise typer.Exit(1)


@acl_app.command("list")
def acl_list() -> None:
    """The roles of infra/acl.yaml: user, password variable, what each is for."""
    root = container()
    policy = _policy(root)
    table = Table("role / user", "password from", "reads", "writes", "purpose")
    for role in policy.roles:
        table.add_row(
            role.name,
            role.password_env_var,
            str(len(role.topics.get("read", ()))),
            str(len(role.topics.get("write", ()))),
            role.description,
        )
    console.print(table)
