"""The demo's last act: a verified erasure request for the caller of the demo, from intake
to ORES's instruction, every registered consumer's answer, proof and report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from streams.bootstrap import Container

DEMO_CALLER = (("phone", "+32 471 12 34 56"), ("email", "caller.demo@example.org"))


def run_erasure(root: Container, say: Callable[[str], None]) -> dict[str, Any]:
    from streams.control.privacy.catchup import apply_privacy_topics
    from streams.control.privacy.config import load_privacy_config
    from streams.control.privacy.evidence import request_report
    from streams.control.privacy.intake import Intake, identifiers
    from streams.control.privacy.messages import send_ores_instruction
    from streams.control.privacy.service import PrivacyService
    from streams.kafka.outbox import Outbox
    from streams.ledger import session_factory
    from streams.sdk.downstream.example import serve_registered

    config = load_privacy_config(root)
    service = PrivacyService.from_container(root, config, actor="demo")
    now = datetime.now(UTC)
    try:
        intake = Intake("erasure", identifiers(list(DEMO_CALLER)), "privacy-office", now,
                        verified_by="id_card_copy")  # fmt: skip
        request = service.submit(intake, now)
        say(f"privacy: erasure request {request.request_id} for the demo caller "
            f"(identity proven): {request.state}, {len(request.subjects)} subject(s), "
            f"data of {', '.join(sorted(request.controllers))}")  # fmt: skip
        outbox = Outbox(root.settings.kafka_client_config(), root.topics, root.schemas)
        send_ores_instruction(outbox, request.request_id, "execute", None, now)
        apply_privacy_topics(root, service, datetime.now(UTC))
        say(f"privacy: ORES instructed execute; {service.get(request.request_id).state}")
        answered: list[str] = []
        serve_registered(root, config.registry.consumers, max_idle_s=2.0, say=answered.append)
        say(f"privacy: the example downstream consumers answered {len(answered)} command(s)")
        apply_privacy_topics(root, service, datetime.now(UTC))
        done = service.get(request.request_id)
        readable = readable_events(root, done.subjects)
        say(f"privacy: request {done.state}; events of the person still readable in any "
            f"topic: {readable}")  # fmt: skip
        with session_factory(root.ledger_engine)() as session:
            report = request_report(session, done.request_id, datetime.now(UTC))
        return {"request_id": done.request_id, "state": str(done.state), "readable": readable,
                "answers": report["answers"], "report": report}  # fmt: skip
    finally:
        service.close()


def readable_events(root: Container, subjects: tuple[str, ...]) -> int:
    """How many of the subjects' tagged events can still be decrypted (0 after erasure)."""
    from processors.crypto import KeyUnavailable
    from schemas.serde import AvroSerde
    from streams.control.privacy.export import TAGGED_TOPICS
    from streams.kafka.readback import read_all
    from streams.keys import load_keys
    from streams.ledger import session_factory
    from streams.plaintext import open_event, vault_lookup

    serde, master = AvroSerde(root.schemas), load_keys(root.settings).master_key
    wanted, readable = {s.encode() for s in subjects}, 0
    with session_factory(root.ledger_engine)() as session:
        for logical in TAGGED_TOPICS:
            for message in read_all(root.settings.kafka_client_config(), root.topics.name(logical)):
                if message.key() not in wanted:
                    continue
                try:
                    open_event(serde, serde.deserialize(message.value() or b"")[1], master,
                               vault_lookup(session))  # fmt: skip
                    readable += 1
                except KeyUnavailable:
                    pass
    return readable
