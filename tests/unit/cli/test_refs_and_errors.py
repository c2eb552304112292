"""The CLI's contract: output formats, exit codes and one-line errors.

Aspects: ``kustos refs`` JSON on the example app; its table redirected to a file or a pipe
keeps every reference on one line, field path whole; a multi-document stream on stdin;
malformed documents skipped with a file:line note and exit 0; usage and input errors exit 2
with one line and no traceback; a missing kubeconfig or dev-cluster is one clear line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kustos.cli.main import main
from kustos.errors import ConfigError
from kustos.kube.client import ClientSettings, load_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "shop"


def test_refs_json_on_the_example_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refs", str(EXAMPLES), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"] == {"objects": 21, "secrets": 5, "references": 9, "errors": 0}
    by_consumer = {
        (r["consumer"]["kind"], r["consumer"]["name"], r["secret"], r["via"])
        for r in doc["references"]
    }
    assert ("Deployment", "worker", "payment-keys", "envFrom") in by_consumer
    assert (
        "ServiceAccount",
        "default",
        "registry-pull",
        "serviceAccount.imagePullSecrets",
    ) in by_consumer
    assert ("CronJob", "backup", "db-credentials", "env") in by_consumer
    assert ("StatefulSet", "db", "db-credentials", "projected") in by_consumer
    assert all(r["secret_exists"] for r in doc["references"])


def test_refs_table_redirected_never_wraps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # as a cron job or a pipe sees it: 80 columns
    assert main(["refs", str(EXAMPLES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 9  # one line per reference, none folded onto a second
    longest = "spec.jobTemplate.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef"
    assert any("CronJob/backup" in row and longest in row for row in rows)
    assert max(len(line) for line in lines) > 80  # wider than rich's default, not folded
    assert len({len(line) for line in lines[1:]}) == 1  # a whole table: every line as wide


def test_refs_reads_a_multi_document_stream_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = "\n---\n".join(p.read_text() for p in sorted(EXAMPLES.glob("*.yaml")))
    monkeypatch.setattr("sys.stdin", io.StringIO(stream))
    assert main(["refs", "-", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["references"] == 9


def test_malformed_document_is_skipped_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  containers:\n"
        "  - name: c\n    envFrom: [{secretRef: {name: s}}]\n---\nkind: [broken\n"
    )
    assert main(["refs", str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["summary"]["references"] == 1
    assert f"kustos: skipped {tmp_path / 'a.yaml'}:9: invalid YAML" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["refs"], "nothing to read"),
        (["refs", "/nonexistent/path"], "/nonexistent/path: "),
        (["refs", ".", "--cluster"], "either PATH arguments or --cluster"),
        (["refs", ".", "--format", "xml"], "'xml' is not one of 'table', 'json'"),
        (["refs", "--no-such-option"], "No such option"),
    ],
)
def test_usage_and_input_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_kubeconfig_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["refs", "--cluster", "--kubeconfig", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kustos: error: no usable kubeconfig at")
    assert err.count("\n") == 1


def test_dev_cluster_env_without_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev-cluster", "env", "--state-dir", str(tmp_path)]) == 1
    assert "dev-cluster is not running" in capsys.readouterr().err
    assert main(["dev-cluster", "status", "--state-dir", str(tmp_path)]) == 1


def test_missing_binaries_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUSTOS_CONTROLPLANE_BIN", str(tmp_path))
    assert main(["dev-cluster", "up", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert "control-plane binaries missing" in err
    assert "kube-apiserver" in err
    assert "make controlplane" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == "0.1.0"


def test_client_settings_pick_the_named_context(tmp_path: Path) -> None:
    def cluster(name: str, port: int) -> dict[str, object]:
        return {"name": name, "cluster": {"server": f"https://127.0.0.1:{port}"}}

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster("a", 1111), cluster("b", 2222)],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "ctx-a", "context": {"cluster": "a", "user": "u"}},
            {"name": "ctx-b", "context": {"cluster": "b", "user": "u", "namespace": "team"}},
        ],
        "current-context": "ctx-a",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    loaded = load_config(ClientSettings(kubeconfig=path))
    single = loaded.get(context_name="ctx-b")
    assert single is not None
    assert single.cluster.server == "https://127.0.0.1:2222"
    assert single.namespace == "team"
    default = loaded.get()
    assert default is not None
    assert default.cluster.server == "https://127.0.0.1:1111"
    path.write_text("::: not yaml")
    with pytest.raises(ConfigError, match="no usable kubeconfig"):
        load_config(ClientSettings(kubeconfig=path))
