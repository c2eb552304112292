"""The control-plane configuration files a scan reads, parsed once into frozen types.

``encryption`` reads an EncryptionConfiguration, ``auditpolicy`` an audit Policy. Both are
purely data (a body already loaded from YAML in, values out, no I/O), built once per scan by
:func:`kustos.scan.checking.scan_input` and read by the checks in ``kustos.scan.checks``.
What a file means for Secrets (which provider writes them, which rule logs them) is the
checks' business, not this package's.

May import: ``kustos.errors`` and the standard library only.
"""
