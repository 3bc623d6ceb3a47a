"""Operations: the local broker and cluster, topics' ACLs, dead letters, status and lag."""
