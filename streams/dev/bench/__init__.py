"""`contactflow bench router`: the router's throughput against a limit and two peers.

One run, one broker, one pre-loaded mixed-channel workload (`workload`), four systems:
the Python limit (`limit`), a faust-streaming agent (`faust_peer`), a Quix Streams app
(`quix_peer`, in its own pinned virtualenv: `quix_env`) and the router, each measured as
events / (first consumed -> all outputs on the broker) by `harness`; `router_bench` runs
them and compares. Peers share the "bare tagging" semantics of `tagging`; with
`--same-work`, a second Quix app does the router's own work (`same_work`).

This package is imported by peer subprocesses, some of them in another virtualenv:
importing it (and `spec`, `tagging`, `same_work`) must need only the stdlib, fastavro,
phonenumbers, PyYAML and cryptography.
"""
