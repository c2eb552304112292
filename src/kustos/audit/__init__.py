"""Watch: audit policy, receiver, tamper-evident archive, detectors and forwarding.

Pure (no I/O; listed in the "Capability logic is pure" contract): ``records`` (events as
archived: value stripping, summaries), ``hashing`` (the chain, record lines, signed
checkpoints), ``policy`` (the recommended Policy; ``lint`` through the scanner's checks).
Adapters: ``archive`` (segments, checkpoints, the writer's lock, hooks), ``indexing``
(SQLite posting lists), ``querying``, ``verifying``, ``ingesting`` (log files),
``receiving`` (the asyncio webhook server). The alert half: ``detecting``, ``alerts``,
``watching``, ``forwarding``, ``sinks``. May import ``scan`` (for ``lint``) and the kernel,
never the CLI or the harness.
"""
