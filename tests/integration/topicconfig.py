"""Changing a topic's config by hand on the real broker, as an operator (or a policy)
would: the poison tests lower `max.message.bytes` under what a worker writes."""

from __future__ import annotations

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from streams.bootstrap import Container


def set_max_message_bytes(container: Container, logical: str, max_bytes: int | None) -> None:
    """Set (or, with None, remove) `max.message.bytes` of one of the container's topics."""
    op = AlterConfigOpType.SET if max_bytes is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry("max.message.bytes", str(max_bytes or ""), incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, container.topics.name(logical),
                              incremental_configs=[entry])  # fmt: skip
    admin = container.admin()  # kept until the futures resolve
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
