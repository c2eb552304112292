"""Kustos: a Kubernetes secrets custodian.

The package is layered (see ``docs/architecture.md`` and the import-linter contracts in
``pyproject.toml``): ``cli`` on top, long-running services below it, capabilities in the
middle and a small shared kernel (``kube``, ``crypto``, ``errors``, ``conventions``,
``sensitive``) at the bottom.
"""

__version__ = "0.1.0"
