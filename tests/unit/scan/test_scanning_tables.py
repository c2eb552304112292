"""The tables built when first asked are built once, by the process that reads them.

Aspects: the set of check functions the scan runs in the first forked process
(``Check.reads_tables``) is exactly the set of catalog functions that build the index's
reference tables or the RBAC policy, on the whole corpus; the policy is built when a
check first asks, once, and describes the input's index; with forked processes this
process builds neither the tables nor the policy (the first forked one does), and the
report is the one checked in one process, byte for byte, whatever the number of
processes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kustos.kube import index as index_module
from kustos.kube.loading import ManifestLoader
from kustos.kube.references import secret_references
from kustos.rbac.model import build_policy
from kustos.scan import checking
from kustos.scan.catalog import CHECKS
from kustos.scan.checking import scan_input
from kustos.scan.forking import Forking
from kustos.scan.reporting import to_json
from kustos.scan.scanning import _functions, scan

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "manifests"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What this process builds: ``tables`` (each object's references walked) or ``policy``."""
    built: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            built.append(name)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(index_module, "secret_references", spy("tables", secret_references))
    monkeypatch.setattr(checking, "build_policy", spy("policy", build_policy))
    return built


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo")
@pytest.mark.timeout(120)
def test_the_reserved_functions_are_those_that_build_tables(builds: list[str]) -> None:
    loader = ManifestLoader(workers=1)
    index = loader.load([str(CORPUS)])
    readers = set()
    for function in _functions(CHECKS):
        fresh = index.only(lambda _: True)  # no table built yet
        builds.clear()
        list(function(scan_input(fresh)))
        if builds:
            readers.add(function)
    assert readers == {c.run for c in CHECKS if c.reads_tables}
    # Every rule of one function says the same (the flag belongs to the function).
    flagged = {c.run for c in CHECKS if c.reads_tables}
    assert all(c.reads_tables == (c.run in flagged) for c in CHECKS)
    assert len(readers) >= 5  # KST020, KST030, KST001... do read them


def _manifests(tmp_path: Path) -> Path:
    docs = []
    for i in range(12):
        docs.append(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: db-{i}, namespace: ns-{i % 2}}}\n"
            f"stringData:\n  password: Tr0ub4dor-{i}-x9Qz!\n"
        )
        docs.append(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
            f"  name: app-{i}\n  namespace: ns-{i % 2}\nspec:\n  template:\n    spec:\n"
            "      containers:\n      - name: app\n        image: app:1\n        env:\n"
            "        - name: DB_PASSWORD\n          valueFrom:\n"
            f"            secretKeyRef: {{name: db-{i}, key: password}}\n"
        )
    docs.append(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n"
        "  name: readers\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole,"
        " name: cluster-admin}\nsubjects:\n- {kind: Group, name: system:authenticated}\n"
    )
    path = tmp_path / "all.yaml"
    path.write_text("---\n".join(docs))
    return path


def test_the_policy_is_built_once_when_first_asked(tmp_path: Path, builds: list[str]) -> None:
    loader = ManifestLoader(workers=1, stdin=io.StringIO(""))
    parsed = scan_input(loader.load([str(_manifests(tmp_path))]))
    assert "policy" not in builds
    first = parsed.policy
    assert parsed.policy is first
    assert builds.count("policy") == 1
    assert [b.name for b in first.bindings] == ["readers"]


@pytest.mark.parametrize("processes", [2, 3])
def test_forked_checks_build_no_table_here(
    tmp_path: Path, builds: list[str], processes: int
) -> None:
    path = _manifests(tmp_path)
    reports = []
    for share in (None, Forking(processes)):
        loader = ManifestLoader(workers=1, stdin=io.StringIO(""))
        index = loader.load([str(path)])
        builds.clear()
        reports.append(to_json(scan(scan_input(index), locate=loader.line, share=share)))
        # Alone, this process builds both; shared out, the first forked process does.
        assert sorted(set(builds)) == ([] if share else ["policy", "tables"])
    single, shared = reports
    assert shared == single
    for rule in ("KST012", "KST020", "KST050"):  # a policy, a reference and a value finding
        assert f'"rule_id": "{rule}"' in single
