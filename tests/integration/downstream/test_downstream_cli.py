"""`contactflow downstream serve` on the real broker, and with no broker at all."""

from __future__ import annotations

import pytest
from downstream_commands import command, publish, read_acks
from typer.testing import CliRunner

from streams.bootstrap import Container
from streams.cli import app

pytestmark = pytest.mark.integration


def test_serve_all_answers_every_consumers_commands(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = container.settings
    monkeypatch.setenv("CONTACTFLOW_BOOTSTRAP_SERVERS", settings.bootstrap)
    monkeypatch.setenv("CONTACTFLOW_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("CONTACTFLOW_DATA_DIR", str(settings.data_dir))
    commands = [
        command("crm", "erase"),
        command("recording_store", "erase", held=["rec-000777"]),
        command("survey_tool", "suppress"),
        command("ores_systems", "stop_purpose"),
        command("reporting_warehouse", "rectify"),
        command("coaching_tool", "lift_restriction"),
    ]
    publish(container, commands)

    result = CliRunner().invoke(app, ["downstream", "serve", "--all", "--max-idle", "2"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for sent in commands:
        outcome = "retained_under_hold" if sent["held_recordings"] else "done"
        expected = f"{sent['consumer']} {sent['command_id']} {sent['command']} -> {outcome}"
        assert expected in lines
        assert sent["subject_pseudonym"] not in result.output
    assert "crm: 1 received, answered: 1 done; 5 for other consumers, 0 unreadable" in lines
    acks = read_acks(container)
    assert sorted(a["command_id"] for _, a in acks) == sorted(c["command_id"] for c in commands)


def test_serve_one_consumer_leaves_the_others_unanswered(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = container.settings
    monkeypatch.setenv("CONTACTFLOW_BOOTSTRAP_SERVERS", settings.bootstrap)
    monkeypatch.setenv("CONTACTFLOW_TOPIC_PREFIX", settings.topic_prefix)
    crm, other = command("crm", "restrict"), command("coaching_tool", "restrict")
    publish(container, [crm, other])

    args = ["downstream", "serve", "--consumer", "crm", "--max-idle", "2"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert [a["command_id"] for _, a in read_acks(container)] == [crm["command_id"]]


def test_serve_needs_all_or_consumers() -> None:
    result = CliRunner().invoke(app, ["downstream", "serve", "--all", "--consumer", "crm"])
    assert result.exit_code == 2
    assert "give --all or at least one --consumer" in result.output
