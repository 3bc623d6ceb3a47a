"""The privacy service's spans and metrics: request ids, types, states and counts only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry.metrics import Observation
from sqlalchemy.orm import Session

from streams.ledger import PrivacyRequests
from streams.telemetry import Telemetry


class PrivacyInstruments:
    """A span per intake, instruction, execution, acknowledgement and deadline check; a
    counter of transitions, one of escalations, a gauge of open and overdue requests."""

    def __init__(self, telemetry: Telemetry, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions
        self._tracer = telemetry.tracer("contactflow.privacy")
        meter = telemetry.meter("contactflow.privacy")
        self.transitions = meter.create_counter(
            "contactflow.privacy.transitions", description="request state changes by event"
        )
        self.escalations = meter.create_counter(
            "contactflow.privacy.escalations", description="overdue requests and consumers"
        )
        meter.create_observable_gauge(
            "contactflow.privacy.requests", callbacks=[self._observe_requests],
            description="requests by status: open, overdue (open past their deadline)",
        )  # fmt: skip

    @contextmanager
    def span(
        self, name: str, request_id: str | None, request_type: str | None = None
    ) -> Iterator[Any]:
        with self._tracer.start_as_current_span(name) as span:
            if request_id is not None:
                span.set_attribute("contactflow.request_id", request_id)
            if request_type is not None:
                span.set_attribute("contactflow.request_type", str(request_type))
            yield span

    def _observe_requests(self, _options: Any) -> Iterator[Observation]:
        now = datetime.now(UTC)
        with self._sessions() as session:
            open_count, overdue = PrivacyRequests(session).count_open(now)
        yield Observation(open_count, {"status": "open"})
        yield Observation(overdue, {"status": "overdue"})
