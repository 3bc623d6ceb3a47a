"""No password ever shows: not in CLI output, logs (ours and librdkafka's, at DEBUG),
exception messages, reprs, nor the broker's own log files, including on failures."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from streams.cli import app
from streams.control.app import faust_credentials
from streams.ops.acl.apply import authenticates

pytestmark = pytest.mark.integration


def test_no_password_in_output_logs_exceptions_or_broker_logs(  # type: ignore[no-untyped-def]
    secure,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    env = secure.env(None, tmp_path / "cli")
    broker_env = {
        "CONTACTFLOW_DATA_DIR": str(secure.broker.settings.data_dir),
        "CONTACTFLOW_BROKER_PORT": str(secure.broker.settings.broker_port),
        "CONTACTFLOW_CONTROLLER_PORT": str(secure.broker.settings.controller_port),
    }
    wrong_admin = tmp_path / "wrong-admin.password"
    wrong_admin.write_text("definitely-not-the-admin-password\n")
    seen: list[str] = []
    runs = [
        (["acl", "list"], env),
        (["acl", "apply", "--dry-run"], env | {"CONTACTFLOW_LOG_LEVEL": "DEBUG"}),
        (["acl", "apply"], env),
        (["acl", "verify"], env),
        (["broker", "status"], broker_env),
        (["acl", "apply"], env | {"CONTACTFLOW_KAFKA_PASSWORD_FILE": str(wrong_admin)}),
        (["acl", "verify"], env | {"CONTACTFLOW_ACL_PASSWORD_ROUTER": "wrong-router-pw"}),
    ]
    for args, variables in runs:
        result = runner.invoke(app, args, env=variables)
        seen += [result.output, str(result.exception), repr(result.exception)]
    assert "acl_checks=" in seen[9], "verify ran"
    assert "sasl" in seen[12], "broker status shows the secured mode"
    assert seen[16] != "None", "the refused admin login was reported"
    assert seen[19] != "None", "the refused role login was reported"

    settings = secure.settings("router", tmp_path / "router")
    seen += [repr(settings), str(settings), str(settings.model_dump())]
    seen.append(repr(faust_credentials(settings)))
    wrong = SecretStr("wrong-" + secure.passwords["router"].get_secret_value())
    assert not authenticates(settings, "router", wrong, timeout=5)

    main = subprocess.run(
        [sys.executable, "-m", "streams.cli.__main__", "acl", "apply"],
        env={"PATH": "/usr/bin:/bin", **env, "CONTACTFLOW_ACL_PASSWORD_PRIVACY_APP": "x" * 12,
             "CONTACTFLOW_LOG_LEVEL": "DEBUG"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    seen += [main.stdout, main.stderr]
    assert "set-password privacy-app" in main.stdout, main.stdout + main.stderr
    restore = runner.invoke(app, ["acl", "apply"], env=env)
    assert "set-password privacy-app" in restore.output, restore.output

    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    logs = secure.broker.home / "logs"
    seen += [path.read_text(errors="replace") for path in logs.glob("*.log")]
    everything = "\n".join(seen)
    leaked = [
        *secure.all_secrets(),
        "wrong-router-pw",
        wrong.get_secret_value(),
        "x" * 12,
        "definitely-not-the-admin-password",
    ]
    for secret in leaked:
        assert secret not in everything
