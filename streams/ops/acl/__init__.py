"""Broker access as code: SCRAM users and ACLs from `infra/acl.yaml`, and their proof.

`apply` makes the broker hold exactly the users and ACLs of the file; `verify` tries every
role against every declared topic on the real broker. The decisions (which ACLs, which
answers) come from the pure `processors.acl`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from processors.acl import AclPolicy, AclPolicyError, parse_acl_policy
from streams.errors import ContactflowError
from streams.topics import TopicCatalog


class AccessError(ContactflowError):
    """Users or ACLs could not be read, applied or verified; never quotes a password."""


def load_acl_policy(path: Path, topics: TopicCatalog) -> AclPolicy:
    """Read `infra/acl.yaml` and check it against the declared topics."""
    try:
        document = yaml.safe_load(path.read_text())
        return parse_acl_policy(document, [spec.name for spec in topics.specs])
    except (OSError, yaml.YAMLError, AclPolicyError) as exc:
        raise AccessError(f"cannot use {path}: {exc}") from None


__all__ = ["AccessError", "load_acl_policy"]
