"""``kustos demo`` end to end on a control plane of its own, as ``make demo`` runs it.

Aspects: the tour exits 0 and shows every chapter; the backup chapter takes the
``billing`` namespace through ``kustos backup keygen``, ``create``, ``verify``, deletion
and ``restore``, and finds every Secret equal to its original; the audit chapter's real
API server sends real events to ``kustos audit serve``, the planted cluster-wide list
raises a ``bulk_read`` alert naming deploy-bot (and nothing else does), ``audit query
--secret shop/db-credentials`` answers who read it (alice, allowed and refused, and
deploy-bot's list), the archive verifies, and the planted RBAC is gone afterwards; a
second tour on the same cluster passes again (the scratch folders start empty); no Secret
value of the example manifests appears in the output (canary).

The demo starts its dev-cluster detached in a temporary state folder; the test stops it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from kustos.cli.main import main
from kustos.kube.client import ClientSettings, make_client
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example_values() -> set[str]:
    """Every Secret value of the manifests the demo applies, plain and base64 (long ones)."""
    values: set[str] = set()
    for path in [*EXAMPLES.glob("shop/*.yaml"), *EXAMPLES.glob("backup/*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Secret":
                continue
            for text in (doc.get("stringData") or {}).values():
                values |= {text, base64.b64encode(text.encode()).decode()}
            values |= set((doc.get("data") or {}).values())
    return {v for v in values if len(v) >= 12}  # short ones ("shop") are also names


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A dev-cluster state folder; the cluster the demo leaves running is stopped after."""
    folder = tmp_path / "dev-cluster"
    try:
        yield folder
    finally:
        plane = ControlPlane(ControlPlaneSettings(folder))
        if plane.load_state():
            plane.stop()


def _tour(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    argv = ["demo", "--examples", str(EXAMPLES / "shop"), "--state-dir", str(state_dir)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    return out + err


def _chapter(out: str, title: str) -> str:
    """The lines of one chapter: after its rule, up to the next rule (or the end)."""
    lines = out[out.index(title) :].splitlines()[1:]
    end = next((i for i, line in enumerate(lines) if line.startswith("─")), len(lines))
    return "\n".join(lines[:end])


def test_the_tour_backs_up_restores_and_raises_an_audit_alert(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _tour(state_dir, capsys)
    for number in range(1, 10):
        assert f"{number}. " in out

    backup = _chapter(out, "8. Protect (backup)")
    assert "$ kustos backup keygen --output key.txt" in backup
    assert re.search(r"^age1[0-9a-z]{58}$", backup, re.MULTILINE)
    assert "billing.age: 4 Secret(s)" in backup
    assert "billing.age: OK, every hash and count verified" in backup
    assert "Deleted namespace billing" in backup
    assert re.search(r"create\s+│\s+Secret\s+│\s+billing\s+│\s+invoice-signing", backup)
    assert "create 5" in backup  # the namespace and its four Secrets
    assert "4 of 4 Secrets in billing equal to the originals" in backup
    assert "api-tls, invoice-signing, ledger-db, registry-pull" in backup

    watch = _chapter(out, "9. Watch")
    alerts = [line for line in watch.splitlines() if re.search(r"Z\s+(high|medium|low)", line)]
    assert len(alerts) == 1, alerts  # the planted bulk read, and nothing for normal traffic
    assert re.search(r"high\s+bulk_read\s+deploy-bot", alerts[0])
    assert "deploy-bot listed the Secrets of every namespace" in alerts[0]
    query = watch[watch.index("--secret shop/db-credentials") :]
    assert re.search(r"alice\s+get\s+secrets shop/db-credentials\s+127\.0\.0\.1\s+200", query)
    assert re.search(r"alice\s+list\s+secrets shop/\*\s+127\.0\.0\.1\s+403", query)
    assert re.search(r"deploy-bot\s+list\s+secrets \*/\*\s+127\.0\.0\.1\s+200", query)
    assert re.search(r"ok: \d+ records, \d+ signed checkpoints, index consistent", watch)

    leaked = [v for v in _example_values() if v in out]
    assert not leaked, "a Secret value of the examples appears in the demo's output"

    plane = ControlPlane(ControlPlaneSettings(state_dir))
    assert plane.load_state()
    with make_client(ClientSettings(kubeconfig=plane.kubeconfig)) as client:
        with pytest.raises(ApiError) as gone:
            client.get(ClusterRoleBinding, "demo-secret-lister")
        assert gone.value.status.code == 404  # the planted grant did not outlive the tour

    again = _tour(state_dir, capsys)  # reusing the running cluster, as `make demo` twice
    assert "Reusing the running dev-cluster" in again
    assert "4 of 4 Secrets in billing equal to the originals" in again
    assert "deploy-bot listed the Secrets of every namespace" in _chapter(again, "9. Watch")
