"""The object index and the reference parser on the real manifests in ``shared/corpus``.

Aspects: for every manifest file, the objects and Secrets the index holds equal what an
independent reading with PyYAML's pure-Python loader finds in the file; the one corpus
file that does not parse is reported with its file and line and nothing else is lost;
references in several real files, checked by hand against the files, are found exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.kube.loading import MANIFEST_SUFFIXES, load_manifests
from kustos.kube.references import Via


@pytest.fixture(scope="module")
def manifests(corpus_dir: Path) -> Path:
    """The corpus's manifest folder (the test is skipped when the corpus is missing)."""
    return corpus_dir / "manifests"


def _oracle_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Kubernetes objects in one parsed document, the way a reviewer would count them."""
    if not isinstance(value, dict) or "apiVersion" not in value or "kind" not in value:
        return
    if str(value["kind"]).endswith("List") and isinstance(value.get("items"), list):
        for item in value["items"]:
            yield from _oracle_objects(item)
    elif isinstance(value.get("metadata"), dict):
        yield value


def _oracle(path: Path) -> tuple[int, int] | None:
    """(objects, Secrets) in *path* by an independent reading; ``None`` if it does not parse."""
    text = path.read_text(encoding="utf-8")
    try:
        docs = (
            [json.loads(text)]
            if path.suffix == ".json"
            else list(yaml.load_all(text, Loader=yaml.SafeLoader))
        )
    except (yaml.YAMLError, ValueError):
        return None
    objects = [o for d in docs for o in _oracle_objects(d)]
    return len(objects), sum(
        1 for o in objects if o["kind"] == "Secret" and o["apiVersion"] == "v1"
    )


def _files(manifests: Path) -> list[Path]:
    return sorted(p for p in manifests.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())


# Reads 1,500 files twice, once with PyYAML's pure-Python loader: far beyond the unit timeout.
@pytest.mark.timeout(600)
def test_index_counts_equal_an_independent_reading_of_every_file(manifests: Path) -> None:
    files = _files(manifests)
    assert len(files) > 1500
    mismatches = []
    unparsable = []
    total_objects = 0
    for path in files:
        expected = _oracle(path)
        index = load_manifests([path])
        if expected is None:
            unparsable.append(path)
            assert index.errors, f"{path} does not parse but no error was reported"
            continue
        got = (len(index), len(index.of_kind("Secret")))
        total_objects += got[0]
        if got != expected:
            mismatches.append((str(path.relative_to(manifests)), got, expected))
    assert mismatches == []
    # PROVENANCE.md: one historical kubernetes-website example contains a tab and does not parse.
    assert [p.name for p in unparsable] == ["pod-multiple-secret-env-variable.yaml"]
    assert total_objects > 3000


@pytest.mark.timeout(120)  # the whole corpus in one index
def test_whole_corpus_loads_in_one_index_with_the_bad_file_reported_by_line(
    manifests: Path,
) -> None:
    index = load_manifests([manifests])
    assert len(index.errors) == 1
    err = index.errors[0]
    assert err.source.endswith("pod-multiple-secret-env-variable.yaml")
    assert err.line is not None
    assert "tab" in err.reason
    # every Secret kept its values hidden
    assert all(
        "Sensitive" in type(v).__name__
        for s in index.of_kind("Secret")
        for v in (s.body.get("data") or {}).values()
    )


def _refs(manifests: Path, relative: str) -> list[tuple[str, str, str, str, str | None, bool]]:
    index = load_manifests([manifests / relative])
    return [
        (r.consumer.name, r.secret, r.via.value, r.field, r.key, r.optional)
        for r in index.secret_references()
    ]


WEBSITE = "kubernetes-website/content/en/examples"


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        (
            f"{WEBSITE}/pods/inject/secret-pod.yaml",
            [("secret-test-pod", "test-secret", "volume", "spec.volumes[0].secret", None, False)],
        ),
        (
            f"{WEBSITE}/pods/inject/secret-envars-pod.yaml",
            [
                (
                    "secret-envars-test-pod",
                    "test-secret",
                    "env",
                    "spec.containers[0].env[0].valueFrom.secretKeyRef",
                    "username",
                    False,
                ),
                (
                    "secret-envars-test-pod",
                    "test-secret",
                    "env",
                    "spec.containers[0].env[1].valueFrom.secretKeyRef",
                    "password",
                    False,
                ),
            ],
        ),
        (
            f"{WEBSITE}/pods/inject/pod-secret-envFrom.yaml",
            [
                (
                    "envfrom-secret",
                    "test-secret",
                    "envFrom",
                    "spec.containers[0].envFrom[0].secretRef",
                    None,
                    False,
                )
            ],
        ),
        (
            f"{WEBSITE}/secret/optional-secret.yaml",
            [("mypod", "mysecret", "volume", "spec.volumes[0].secret", None, True)],
        ),
        # An old revision without apiVersion: not an object, so nothing is found.
        (f"{WEBSITE}/pods/inject/pod-single-secret-env-variable.yaml", []),
        (
            "kubernetes-engine-samples/networking/dpv2-observability/hubble-ui-auto.yaml",
            [
                (
                    "hubble-ui",
                    "hubble-relay-client-certs",
                    "projected",
                    "spec.template.spec.volumes[2].projected.sources[0].secret",
                    None,
                    False,
                )
            ],
        ),
        (
            "linkerd2/cli/cmd/testdata/install_default.golden",
            [
                (
                    "linkerd-identity",
                    "linkerd-identity-issuer",
                    "volume",
                    "spec.template.spec.volumes[0].secret",
                    None,
                    False,
                ),
                (
                    "linkerd-destination",
                    "linkerd-sp-validator-k8s-tls",
                    "volume",
                    "spec.template.spec.volumes[0].secret",
                    None,
                    False,
                ),
                (
                    "linkerd-destination",
                    "linkerd-policy-validator-k8s-tls",
                    "volume",
                    "spec.template.spec.volumes[1].secret",
                    None,
                    False,
                ),
                (
                    "linkerd-proxy-injector",
                    "linkerd-proxy-injector-k8s-tls",
                    "volume",
                    "spec.template.spec.volumes[2].secret",
                    None,
                    False,
                ),
            ],
        ),
    ],
)
def test_references_checked_by_hand(
    manifests: Path, relative: str, expected: list[tuple[Any, ...]]
) -> None:
    assert _refs(manifests, relative) == expected


def test_secret_and_its_consumer_in_one_file_are_linked(manifests: Path) -> None:
    index = load_manifests([manifests / WEBSITE / "secret" / "dotfile-secret.yaml"])
    secret = index.secret("default", "dotfile-secret")
    assert secret is not None
    (ref,) = index.consumers_of("default", "dotfile-secret")
    assert (ref.consumer.kind, ref.consumer.name, ref.via) == (
        "Pod",
        "secret-dotfiles-pod",
        Via.VOLUME,
    )


def test_linkerd_golden_file_has_39_objects_and_two_secrets(manifests: Path) -> None:
    # Checked with grep: 39 documents with a kind, two of them "kind: Secret".
    index = load_manifests([manifests / "linkerd2/cli/cmd/testdata/install_default.golden"])
    assert len(index) == 39
    assert len(index.of_kind("Secret")) == 2
