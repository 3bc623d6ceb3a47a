"""Errors that the CLI reports as one clear line instead of a traceback."""

from __future__ import annotations


class ContactflowError(Exception):
    """A failure the user can act on; the message says what went wrong and what to do."""

    exit_code = 2


class BrokerError(ContactflowError):
    """The Kafka broker could not be installed, started, stopped or reached."""


class TopicError(ContactflowError):
    """The declared topics could not be read, applied or checked."""
