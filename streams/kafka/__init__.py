"""Kafka plumbing shared by workers: the transactional outbox, refusal codes, read-back of
topics and the reachability probe."""
