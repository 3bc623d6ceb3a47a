"""Migration 0005: a request in flight keeps the controllers already done, read from the
`executed` events it had before the field existed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from streams.ledger import create_ledger_engine, upgrade
from streams.ledger.engine import session_factory
from streams.ledger.requests import PrivacyRequests

NOW = "2026-11-30 10:00:00.000000"


def test_the_upgrade_fills_executed_for_from_the_executed_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url, "0004")
    engine = create_ledger_engine(url)
    with engine.begin() as db:
        for request_id in ("dsr-1", "dsr-2"):
            db.execute(text(
                "INSERT INTO privacy_requests (request_id, request_type, state, received_at,"
                " submitted_by, due_at, updated_at, subject_pseudonyms, controllers,"
                " extension_months) VALUES (:id, 'erasure', 'awaiting_controller', :t, 'dpo',"
                " :t, :t, :subjects, :controllers, 0)"
            ), {"id": request_id, "t": NOW, "subjects": '["s-' + "ab" * 16 + '"]',
                "controllers": '["COMNEXIO", "ORES"]'})  # fmt: skip
        for details in ('{"controllers": "COMNEXIO", "keys_shredded": 0}', '{"controllers": ""}'):
            db.execute(text(
                "INSERT INTO request_events (request_id, at, actor, event, from_state, state,"
                " details) VALUES ('dsr-1', :t, 'test', 'executed', 'awaiting_controller',"
                " 'awaiting_controller', :details)"
            ), {"t": NOW, "details": details})  # fmt: skip
    engine.dispose()

    upgrade(url)
    engine = create_ledger_engine(url)
    with session_factory(engine)() as session:
        requests = PrivacyRequests(session)
        assert requests.get("dsr-1").executed_for == frozenset({"COMNEXIO"})  # type: ignore[union-attr]
        assert requests.get("dsr-2").executed_for == frozenset()  # type: ignore[union-attr]
    engine.dispose()
