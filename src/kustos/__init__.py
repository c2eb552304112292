"""Kustos: a Kubernetes secrets custodian.

The package is layered (see ``docs/architecture.md`` and the import-linter contracts in
``pyproject.toml``): ``cli`` on top, then the test harness ``testing``, the operator
service ``operator``, the capabilities ``scan``, ``kms``, ``rotation`` and ``rbac``, and a
shared kernel at the bottom: ``kube``, then ``files``, ``durations`` and ``crypto``, then
``errors``, ``conventions`` and ``sensitive``.
"""

__version__ = "0.1.0"
