"""The versioned files under `infra/` (policy, consumer registry), loaded and validated.

A bad file stops the worker that needs it at start-up with the file's path and the
problem the parser found, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from streams.bootstrap import Container
from streams.errors import ContactflowError

T = TypeVar("T")


def load_infra_file(
    container: Container, name: str, parse: Callable[[Any], T], what: str,
    error: type[ContactflowError] = ContactflowError,
) -> T:  # fmt: skip
    """`infra/<name>` parsed by `parse`; `error` naming `what` and the path if it is bad."""
    path = container.settings.infra_dir / name
    try:
        return parse(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise error(f"invalid {what} {path}: {exc}") from None
