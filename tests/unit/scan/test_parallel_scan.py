"""Parsing in a pool of processes, and checking in forked processes, changes no answer.

Aspects: a folder with objects, Lists, malformed documents, non-objects, a JSON file, an
unreadable file and an object declared twice gives the same JSON report, the same errors
in the same order and the same read summary whether it is parsed here or by two
processes; the same holds over the real corpus; stdin among files keeps its place; the
pool never sends a ``Sensitive`` value (values are wrapped after the pipe, so the objects
built from a pool hold ``Sensitive`` values like the others); a parsing process that dies
is one clear error, not a hang or a traceback; a canary value crosses the pool and
appears in no report format and no message. The checks shared out over forked processes
(``share``) give the same report, byte for byte, as the checks run here, on the folder, on
the corpus and with three processes; a checking process that dies is one clear error; a
failure in this process stops the forked ones.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest

from kustos.cli.main import main
from kustos.errors import KustosError
from kustos.kube import loading
from kustos.kube.index import ObjectIndex
from kustos.kube.loading import ManifestLoader
from kustos.scan.checking import scan_input
from kustos.scan.forking import Forking, in_processes
from kustos.scan.reporting import to_json
from kustos.scan.scanning import scan
from kustos.sensitive import Sensitive

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "manifests"


def _secret(i: int) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-{i}\n  namespace: team-{i % 3}\n"
        f"type: Opaque\nstringData:\n  password: Tr0ub4dor-{i}-x9Qz!\n"
    )


def _deployment(i: int) -> str:
    return (
        f"# app {i}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n"
        f"  namespace: team-{i % 3}\nspec:\n  template:\n    spec:\n      containers:\n"
        f"      - name: app\n        image: app:{i}\n        env:\n        - name: DB_PASSWORD\n"
        f"          valueFrom:\n            secretKeyRef: {{name: db-{i}, key: password}}\n"
        f"        - name: API_TOKEN\n          value: ghp_{'a1B2c3D4e5' * 3}abcdef\n"
    )


def _binding(i: int) -> str:
    return (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n"
        f"  name: readers\n  namespace: team-{i % 3}\nroleRef:\n  apiGroup: "
        "rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: admin\nsubjects:\n"
        "- kind: Group\n  name: system:authenticated\n"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    for f in range(8):
        docs = []
        for i in range(f * 10, f * 10 + 10):
            docs += [_secret(i), _deployment(i)]
        docs.append(_binding(f))  # the same three bindings, declared in several files
        if f == 2:
            docs.append("kind: [broken\n")
            docs.append("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
        if f == 3:
            docs.append(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
                "  metadata: {name: cfg, namespace: team-1}\n  data: {password: hunter2hunter2}\n"
            )
        (root / f"part-{f}").mkdir(parents=True)
        (root / f"part-{f}" / "all.yaml").write_text("---\n".join(docs))
    (root / "extra.json").write_text(
        '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j", "namespace": "x"},'
        ' "data": {"token": "c2VjcmV0LXZhbHVlLTEyMzQ1Njc4OTA="}}'
    )
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00binary")
    (root / "README.md").write_text("not read\n")
    return root


def _report(
    paths: list[str], workers: int, stdin: str = "", checkers: int = 1
) -> tuple[str, list[str], ObjectIndex]:
    loader = ManifestLoader(workers=workers, stdin=io.StringIO(stdin))
    index = loader.load(paths)
    share = Forking(checkers) if checkers > 1 else None
    result = scan(scan_input(index), locate=loader.line, share=share)
    return to_json(result), [str(e) for e in index.errors], index


def test_a_pool_gives_the_same_report_as_one_process(folder: Path) -> None:
    single, single_errors, single_index = _report([str(folder)], workers=1)
    pooled, pooled_errors, pooled_index = _report([str(folder)], workers=2)
    assert pooled == single
    assert pooled_errors == single_errors
    assert pooled_index.read_summary() == single_index.read_summary()
    # The report is not trivially empty: findings, errors and duplicates are all there.
    assert '"rule_id": "KST050"' in single
    assert any("invalid YAML" in e for e in single_errors)
    assert any("binary data" in e for e in single_errors)
    assert single_index.read_summary().duplicates


@pytest.mark.parametrize("checkers", [2, 3])
def test_checks_in_forked_processes_give_the_same_report(folder: Path, checkers: int) -> None:
    single, _, _ = _report([str(folder)], workers=1)
    shared, _, _ = _report([str(folder)], workers=2, checkers=checkers)
    assert shared == single
    assert '"rule_id": "KST050"' in single
    assert '"line": ' in single  # located findings, not only the object's first line


def test_checks_in_forked_processes_keep_stdin_and_config_findings(folder: Path) -> None:
    stream = _secret(999) + "---\n" + _deployment(999)
    paths = [str(folder / "part-0"), "-", str(folder / "part-1")]
    single, _, _ = _report(paths, workers=1, stdin=stream)
    shared, _, _ = _report(paths, workers=1, stdin=stream, checkers=2)
    assert shared == single
    assert '"<stdin>"' in single


def test_a_checking_process_that_dies_is_one_clear_error() -> None:
    parent = os.getpid()

    def run(number: int) -> int:
        if os.getpid() != parent:
            os._exit(9)  # as a process killed for memory would
        return number

    with pytest.raises(KustosError, match="a checking process stopped before the end") as info:
        in_processes(run, range(5), processes=2, reserved=[5])  # the child runs 5 first
    assert "exit code 9" in str(info.value)
    assert "--jobs 1" in str(info.value)


def test_a_failure_here_stops_the_forked_processes(tmp_path: Path) -> None:
    parent = os.getpid()

    def run(number: int) -> int:
        if os.getpid() != parent:
            (tmp_path / str(os.getpid())).touch()
            signal.pause()  # a child that would never finish by itself
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ValueError(f"a check failed here ({number})")

    with pytest.raises(ValueError, match="a check failed here"):
        in_processes(run, range(5), processes=3)
    children = [int(p.name) for p in tmp_path.iterdir()]
    assert len(children) == 2
    for pid in children:  # killed and reaped: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_forked_processes_run_every_item_once(processes: int) -> None:
    parent = os.getpid()
    results = in_processes(
        lambda number: (number, os.getpid()),
        range(50),
        processes=processes,
        reserved=[50, 51],
        send=lambda result: [*result, "sent"],  # what crosses the pipe, read back below
        receive=lambda sent: (sent[0], sent[1]),
    )
    assert sorted(results) == list(range(52))
    assert all(number == results[number][0] for number in results)
    reserved_by = {results[50][1], results[51][1]}
    assert len(reserved_by) == 1  # one process ran both, a forked one if any
    assert (parent in reserved_by) == (processes == 1)


def test_stdin_keeps_its_place_between_files(folder: Path) -> None:
    stream = _secret(999) + "---\n" + _deployment(999)
    paths = [str(folder / "part-0"), "-", str(folder / "part-1")]
    single, _, single_index = _report(paths, workers=1, stdin=stream)
    pooled, _, pooled_index = _report(paths, workers=2, stdin=stream)
    assert pooled == single
    files = [o.source.file for o in pooled_index if o.source is not None]
    assert files == [o.source.file for o in single_index if o.source is not None]
    assert "<stdin>" in files


def test_secret_values_are_wrapped_after_the_pool(folder: Path) -> None:
    index = ManifestLoader(workers=2).load([str(folder)])
    secrets = index.of_kind("Secret")
    assert len(secrets) == 81
    for secret in secrets:
        values = {**secret.body.get("data", {}), **secret.body.get("stringData", {})}
        assert values
        assert all(isinstance(v, Sensitive) for v in values.values())


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo")
@pytest.mark.timeout(240)  # the whole corpus, twice
def test_the_corpus_gives_the_same_report_either_way() -> None:
    single, single_errors, _ = _report([str(CORPUS)], workers=1)
    pooled, pooled_errors, _ = _report([str(CORPUS)], workers=2, checkers=2)
    assert pooled == single
    assert pooled_errors == single_errors


def _killed(path: str) -> str:
    """A parsing process that dies at once, as one killed for memory would."""
    del path
    os._exit(9)


def test_a_parsing_process_that_dies_is_one_clear_error(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "_parse_file", _killed)
    with pytest.raises(KustosError, match="a parsing process stopped before the end") as info:
        ManifestLoader(workers=2).load([str(folder)])
    assert info.value.exit_code == 1
    assert "--jobs 1" in str(info.value)


def test_canary_stays_out_of_a_pooled_scan(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = "canary-Vq3Xk9-pooled-zz"
    (folder / "canary.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: canary, namespace: team-0}\n"
        f"stringData:\n  password: {canary}\n---\nkind: [broken {canary}\n"
    )
    for output in ("json", "table", "sarif", "html"):
        main(["scan", str(folder), "--jobs", "2", "--format", output])
        out, err = capsys.readouterr()
        assert "canary.yaml" in out + err  # the file was read and reported on
        assert canary not in out
        assert canary not in err


def test_checks_in_forked_processes_suppress_what_annotations_ignore(folder: Path) -> None:
    # Each process reads the ignore annotations of the objects it found something on.
    ignored = [
        _deployment(200 + i).replace(
            "  name: app-", f"  annotations: {{kustos.io/ignore: '{rule}'}}\n  name: app-"
        )
        for i, rule in enumerate(["all", "KST061", "kst020, KST999", "KST999"])
    ]
    (folder / "ignored.yaml").write_text("---\n".join(ignored))
    results = []
    for share in (None, Forking(2)):
        loader = ManifestLoader(workers=1, stdin=io.StringIO(""))
        index = loader.load([str(folder)])
        results.append(scan(scan_input(index), locate=loader.line, share=share))
    single, shared = results
    assert shared.suppressed == single.suppressed
    assert shared.findings == single.findings
    suppressed = {(f.resource.name, f.rule_id) for f in single.suppressed if f.resource}
    assert {name for name, _ in suppressed} == {"app-200", "app-201", "app-202"}
    assert ("app-201", "KST061") in suppressed
    assert ("app-202", "KST020") in suppressed
    assert not any(name == "app-201" and rule != "KST061" for name, rule in suppressed)
    assert any(f.resource and f.resource.name == "app-203" for f in single.findings)
