"""Inspect: the secrets-risk checks behind ``kustos scan``.

All modules here except ``reporting`` are purely data-manipulative: checks are functions
from an :class:`~kustos.kube.index.ObjectIndex` (and parsed config files) to
:class:`~kustos.scan.findings.Finding` values; no I/O, no clock, no network. Reading files
and clusters happens in ``kustos.kube.loading``/``listing``; printing in ``reporting``.

May import: ``kustos.kube`` (pure modules), ``kustos.rbac``, ``kustos.errors``,
``kustos.conventions``, ``kustos.sensitive``. Must not import the CLI or adapters.
"""
