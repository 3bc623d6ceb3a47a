"""The control plane for data-subject requests (GDPR Arts. 12-22).

`PrivacyService` moves each request through `processors.privacy`'s state machine, with
the ledger as system of record: intake, resolution against the subject index and the
router's footprints, the controller's instruction, execution (crypto-shredding, subject
state, recordings, downstream commands), acknowledgements, deadlines and evidence. The
faust app (`streams.control.app`) feeds it from the privacy topics; the CLI (`contactflow
dsr ...`) calls it directly.
"""
