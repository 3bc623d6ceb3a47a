"""Two privacy apps (faust) in one consumer group on one PostgreSQL ledger, as a deployment
runs them for availability: they share the requests' partitions, both run the deadline
loop every second, and still every request is taken in once, forwarded to ORES once,
each app cuts the request records it took in from its own partitions, and the audit
chain the two processes append to stays whole."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from appproc import app_env, running_privacy_app, wait_for
from flow import decoded, publish, route_person
from people import PHONE
from pgschema import private_postgres_schema

from streams.bootstrap import Container, bootstrap
from streams.control.app import APP_ID
from streams.control.privacy.config import load_privacy_config
from streams.control.privacy.request_cut import REMOVED_ACTION
from streams.control.privacy.service import PrivacyService
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import AuditLog, UnknownRequestError, session_factory, upgrade
from streams.telemetry import Telemetry
from streams.topics import apply_plan, delete_topics, plan

pytestmark = pytest.mark.integration

REQUESTS = 12


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from private_postgres_schema()


@pytest.fixture
def on_postgres(settings_factory, telemetry: Telemetry, postgres_url: str) -> Iterator[Container]:  # type: ignore[no-untyped-def]
    root = bootstrap(settings_factory(database_url=postgres_url), telemetry=telemetry)
    admin = root.admin()
    apply_plan(admin, plan(admin, root.topics).changes)
    upgrade(postgres_url)
    yield root
    delete_topics(admin, root.topics)


def _members_with_requests(root: Container) -> int:
    """Members of the apps' group holding a partition of privacy.requests.v1."""
    requests = root.topics.name("privacy.requests.v1")
    admin = root.admin()  # kept until the answer: a collected client never resolves it
    (future,) = admin.describe_consumer_groups(
        [root.settings.scoped(APP_ID)], request_timeout=10
    ).values()
    group = future.result(timeout=30)
    return sum(
        1
        for member in group.members
        if any(tp.topic == requests for tp in member.assignment.topic_partitions)
    )


def test_two_privacy_apps_share_one_postgresql_ledger(
    on_postgres: Container, postgres_url: str, tmp_path: Path
) -> None:
    root = on_postgres
    keys = load_keys(root.settings)
    now = datetime.now(UTC)
    route_person(root, now)
    env = {
        **app_env(root),
        "CONTACTFLOW_DATABASE_URL": postgres_url,
        "CONTACTFLOW_PSEUDONYM_KEY": base64.b64encode(keys.pseudonym_key).decode(),
        "CONTACTFLOW_MASTER_KEY": base64.b64encode(keys.master_key).decode(),
        "CONTACTFLOW_PRIVACY_DEADLINE_INTERVAL_S": "1",
    }
    logs = [tmp_path / "privacy-app-a.log", tmp_path / "privacy-app-b.log"]
    privacy = PrivacyService.from_container(root, load_privacy_config(root), actor="test")
    try:
        with ExitStack() as stack:
            apps = []
            for name, log in zip("ab", logs, strict=True):
                app_data = str(tmp_path / f"app-{name}")  # a data directory not made yet
                app_env_ = {**env, "CONTACTFLOW_DATA_DIR": app_data}
                apps.append(stack.enter_context(running_privacy_app(app_env_, log)))

            def both_hold_requests() -> bool:
                for app, log in zip(apps, logs, strict=True):
                    assert app.poll() is None, f"an app stopped:\n{log.read_text()[-3000:]}"
                return _members_with_requests(root) == 2

            wait_for(both_hold_requests, "both apps to hold partitions of the request topic",
                     logs[0], 120)  # fmt: skip
            ids = [f"dsr-ha-{n:02d}" for n in range(REQUESTS)]
            for request_id in ids:
                publish(root, "privacy.requests.v1", "PrivacyRequest", request_id, {
                    "request_id": request_id, "request_type": "restriction",
                    "identifiers": [{"kind": "phone", "value": PHONE}], "purpose": None,
                    "received_at": now, "verified_by": "id_card_copy",
                    "submitted_by": "intake-portal", "reason": None,
                })  # fmt: skip

            def forwarded() -> bool:
                try:
                    states = {str(privacy.get(request_id).state) for request_id in ids}
                except UnknownRequestError:  # not taken in yet
                    return False
                return states == {"awaiting_controller"}

            wait_for(forwarded, "every request to be forwarded to ORES", logs[1], 120)
            requests = root.topics.name("privacy.requests.v1")
            config = root.settings.kafka_client_config()
            wait_for(lambda: not read_all(config, requests), "each app to cut the request "
                     "records it took in from its partitions", logs[0], 60)  # fmt: skip
            assert _members_with_requests(root) == 2, "an app left the group"
    finally:
        privacy.close()

    to_ores = Counter(v["request_id"] for _, v in decoded(root, "privacy.controller.ores.v1"))
    assert to_ores == Counter(ids), "each request forwarded once, none lost"
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert PHONE not in text
    with session_factory(root.ledger_engine)() as session:
        audit = AuditLog(session)
        assert audit.verify_chain().ok
        routed = [e.request_id for e in audit.entries(action="request.routed")]
        removed = {e.request_id for e in audit.entries(action=REMOVED_ACTION)}
    assert Counter(r for r in routed if r in ids) == Counter(ids), "each request routed once"
    assert removed == set(ids), "each request's record cut, by the app holding its partition"
