"""faust apps that read only committed records.

faust-streaming reads `read_uncommitted` unless it runs Kafka transactions itself. The
router writes its outputs in transactions: an aborted batch is written again by the next
attempt, so a faust app reading it uncommitted would see those records twice (the
reporting app would count them twice). `read_committed(app)` makes the app's consumer ask
for `read_committed`, which aiokafka reads when the consumer starts.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer


class _ReadCommittedThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by aiokafka when it starts
        return consumer


class _ReadCommittedConsumer(AIOKafkaConsumer):
    def _new_consumer_thread(self) -> _ReadCommittedThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


def read_committed(app: faust.App) -> None:
    """Make every consumer of `app` read only committed records."""
    app.transport.Consumer = _ReadCommittedConsumer  # type: ignore[misc]


def isolation_of(app: faust.App) -> str:
    """The isolation level `app`'s consumer asks for (for tests and status)."""
    committed = issubclass(app.transport.Consumer, _ReadCommittedConsumer)
    return "read_committed" if committed else "read_uncommitted"
