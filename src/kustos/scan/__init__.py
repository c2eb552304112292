"""Inspect: the secrets-risk checks behind ``kustos scan``.

All modules here except ``reporting`` and ``forking`` are purely data-manipulative: checks
are functions from a :class:`~kustos.scan.checking.ScanInput` (an
:class:`~kustos.kube.index.ObjectIndex`, the RBAC policy and the configuration files of
``configs``, each parsed once) to :class:`~kustos.scan.findings.Finding` values; no I/O, no
clock, no network. Reading files and clusters happens in ``kustos.kube.loading``/``listing``
and the CLI; printing in ``reporting``. ``baseline`` is the model of the baseline file,
which the CLI reads and writes through ``kustos.files``. ``forking`` runs work in forked
copies of the process (the CLI hands it to the scanner to share out a large scan's checks).

May import: ``kustos.kube`` (pure modules), ``kustos.rbac``, ``kustos.files`` (the state-file
model only), ``kustos.errors``, ``kustos.conventions``, ``kustos.sensitive``. Must not import
the CLI or adapters.
"""
