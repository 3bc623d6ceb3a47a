"""`bench scale` fills its ledger through the router's write path (`scale_load`); the rows
must be the ones the real router writes when it routes a call naming the same people."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from processors.pseudonym import Pseudonymiser
from streams.dev.bench.people import probe_event
from streams.dev.bench.scale_load import filler_subject, load_people
from streams.keys import load_keys
from streams.ledger import create_ledger_engine, session_factory, upgrade
from streams.ledger.models import Subject, SubjectFootprint, SubjectIdentifier, SubjectKey
from streams.router.worker import RouterWorker

pytestmark = pytest.mark.integration

PEOPLE = range(0, 40, 3)


def _rows(engine: Engine) -> dict[str, set[tuple[object, ...]]]:
    queries = {
        "subjects": select(Subject.subject_pseudonym),
        "identifiers": select(SubjectIdentifier.identifier_digest,
                              SubjectIdentifier.identifier_kind,
                              SubjectIdentifier.subject_pseudonym),
        "footprints": select(SubjectFootprint.subject_pseudonym, SubjectFootprint.controller,
                             SubjectFootprint.channel),
        "live keys": select(SubjectKey.subject_pseudonym, SubjectKey.algorithm).where(
            SubjectKey.wrapped_key.is_not(None)),
    }  # fmt: skip
    with engine.connect() as connection:
        return {name: {tuple(row) for row in connection.execute(query)}
                for name, query in queries.items()}  # fmt: skip


def test_loaded_people_are_the_rows_the_router_writes(container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    routed_url = container.settings.resolved_database_url()
    upgrade(routed_url)
    producer = container.producer()
    for index in PEOPLE:
        event = probe_event("+32 470 00 00 00")
        event["envelope"]["subject"] = filler_subject(index)
        producer.send("phone", event)
    assert producer.flush().delivered == len(PEOPLE)
    assert RouterWorker(container).run(max_idle_s=1.0).events_in == len(PEOPLE)

    loaded_url = f"sqlite:///{tmp_path / 'loaded.db'}"
    upgrade(loaded_url)
    loaded = create_ledger_engine(loaded_url)
    keys = load_keys(container.settings)
    load_people(session_factory(loaded), Pseudonymiser(keys.pseudonym_key), keys.master_key,
                PEOPLE, datetime.now(UTC))  # fmt: skip

    routed_engine = create_ledger_engine(routed_url)
    try:
        expected, found = _rows(routed_engine), _rows(loaded)
        assert len(expected["subjects"]) == len(PEOPLE)
        assert len(expected["identifiers"]) == 2 * len(PEOPLE)  # a phone and an e-mail each
        assert found == expected
    finally:
        routed_engine.dispose()
        loaded.dispose()
