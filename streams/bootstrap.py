"""The composition root: builds clients, catalogs and the ledger, and hands them out.

Nothing here connects at import time; each factory connects when first called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from streams.settings import Settings, load_settings
from streams.telemetry import Telemetry, configure_telemetry
from streams.topics import TopicCatalog, load_topics

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient
    from sqlalchemy.engine import Engine

    from schemas.catalog import SchemaCatalog
    from streams.sdk.producer import ContactEventProducer


@dataclass
class Container:
    """Everything a command or worker needs, built from one Settings object."""

    settings: Settings
    service_name: str = "contactflow"
    _telemetry: Telemetry | None = field(default=None, repr=False)

    @cached_property
    def topics(self) -> TopicCatalog:
        return load_topics(
            self.settings.infra_dir / "topics.yaml",
            profile=self.settings.topic_profile,
            prefix=self.settings.topic_prefix,
        )

    @cached_property
    def schemas(self) -> SchemaCatalog:
        from schemas.catalog import SchemaCatalog

        return SchemaCatalog.load()

    @property
    def telemetry(self) -> Telemetry:
        if self._telemetry is None:
            self._telemetry = configure_telemetry(
                self.service_name, prometheus=self.settings.http_port is not None
            )
        return self._telemetry

    def admin(self) -> AdminClient:
        from confluent_kafka.admin import AdminClient

        return AdminClient(dict(self.settings.kafka_client_config()))

    def producer(self) -> ContactEventProducer:
        from streams.sdk.producer import ContactEventProducer

        return ContactEventProducer(
            self.settings.kafka_client_config(), self.topics, self.schemas, self.telemetry
        )

    @cached_property
    def ledger_engine(self) -> Engine:
        from streams.ledger import create_ledger_engine

        return create_ledger_engine(
            self.settings.resolved_database_url(),
            connect_timeout_s=self.settings.connect_timeout_s,
        )


def bootstrap(
    settings: Settings | None = None,
    *,
    telemetry: Telemetry | None = None,
    service_name: str = "contactflow",
) -> Container:
    """Build the container; tests pass their own settings and in-memory telemetry."""
    return Container(settings or load_settings(), service_name, telemetry)
