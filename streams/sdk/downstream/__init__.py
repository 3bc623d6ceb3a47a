"""The downstream SDK: a consumer of privacy commands that answers each one exactly once."""
