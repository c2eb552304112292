"""What a command imports at start: only what it uses (the import rule of docs/architecture.md).

Aspects: ``kustos --help``, ``version`` and ``--version`` import no command module and no
library of any command, and the two version forms not even Typer; ``seal`` and ``unseal``
of one file load neither the Kubernetes client nor the harness, rich, the rotation spec
nor the state-file codec; ``scan`` and ``refs`` of one small file load no client library,
no cryptography (no certificate in it) and no process pool; ``--help`` lists every command
with the summary its own help starts with, although it imports none of them;
``--version`` prints the version. Each command runs in a fresh interpreter (``sys.modules``
of this test process holds everything), and the test looks at the names, not at a clock.

Typer builds a pydantic ``TypeAdapter`` for the parameters of the command it runs (even
``--help``'s flag), so pydantic itself is loaded by every command that reaches Typer: the
test names Kustos's own pydantic models instead, which are a command's own choice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pytest
import typer
from typer.main import get_command

from kustos import __version__
from kustos.cli.app import COMMANDS, build_app
from kustos.cli.main import main
from kustos.crypto import sops

EXAMPLE: Final = Path(__file__).resolve().parents[3] / "examples" / "shop" / "40-workloads.yaml"

#: Runs ``main(argv)`` with stdout discarded, then reports the loaded modules as JSON.
_PROBE: Final = """
import contextlib, io, json, sys
from kustos.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[2:])
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules)}, report)
"""

#: Libraries no local command needs: the cluster client and its transport, gRPC, PKCS#11.
CLIENTS: Final = ("lightkube", "httpx", "httpx2", "grpc", "pkcs11", "msgspec")
#: Kustos modules that only cluster, service and harness commands need.
ADAPTERS: Final = (
    "kustos.kube.client",
    "kustos.kube.listing",
    "kustos.kube.applying",
    "kustos.testing",
    "kustos.operator",
    "kustos.sources.reading",
)
#: Every command module: ``--help`` and the version forms import none of them.
COMMAND_MODULES: Final = tuple(sorted({entry.module for entry in COMMANDS.values()}))


def _loaded(argv: Sequence[str], tmp_path: Path) -> tuple[int, set[str]]:
    """Run ``kustos ARGV`` in a fresh interpreter: its exit code and the modules it loaded."""
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    doc = json.loads(report.read_text())
    return doc["code"], set(doc["modules"])


def _present(modules: set[str], names: Sequence[str]) -> list[str]:
    """The *names* (or any submodule of them) found in *modules*."""
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [["--help"], ["version"], ["--version"]])
def test_help_and_version_import_no_command(argv: list[str], tmp_path: Path) -> None:
    code, modules = _loaded(argv, tmp_path)
    assert code == 0
    heavy = ("yaml", "cryptography", "pyrage", "orjson", "kustos.kube", "kustos.rotation")
    assert _present(modules, [*COMMAND_MODULES, *CLIENTS, *ADAPTERS, *heavy]) == []
    assert "kustos.files.state" not in modules
    if argv != ["--help"]:  # answered before Typer; only the help screen needs rich
        assert _present(modules, ["typer", "pydantic", "rich", "logging", "kustos.cli.app"]) == []


@pytest.fixture
def sealing_files(tmp_path: Path) -> dict[str, Path]:
    """A Secret manifest, an age identity and its recipient, and the SealedSecret of both."""
    recipient, identity = sops.new_identity()
    files = {
        "plain": tmp_path / "one.yaml",
        "recipients": tmp_path / "recipients.txt",
        "key": tmp_path / "key.txt",
        "sealed": tmp_path / "sealed.yaml",
    }
    files["plain"].write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\n"
        "stringData: {password: not-a-real-one}\n"
    )
    files["recipients"].write_text(recipient + "\n")
    files["key"].write_text(identity.reveal_text() + "\n")
    files["key"].chmod(0o600)
    argv = ["seal", "-f", str(files["plain"]), "-R", str(files["recipients"])]
    argv += ["-o", str(files["sealed"])]
    assert main(argv) == 0
    return files


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["seal", "unseal"])
def test_seal_and_unseal_load_no_cluster_code(
    command: str, sealing_files: dict[str, Path], tmp_path: Path
) -> None:
    if command == "seal":
        argv = ["seal", "-f", str(sealing_files["plain"]), "-R", str(sealing_files["recipients"])]
    else:
        argv = ["unseal", "-i", str(sealing_files["key"]), str(sealing_files["sealed"])]
    code, modules = _loaded(argv, tmp_path)
    assert code == 0
    assert "kustos.cli.seal" in modules  # the probe did run the command
    not_needed = ["rich", "kustos.kube.loading", "kustos.rotation", "kustos.files.state"]
    assert _present(modules, [*CLIENTS, *ADAPTERS, *not_needed]) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [["scan", "--format", "json"], ["refs"]])
def test_scan_and_refs_of_one_file_load_no_client(argv: list[str], tmp_path: Path) -> None:
    code, modules = _loaded([argv[0], str(EXAMPLE), *argv[1:]], tmp_path)
    assert code in (0, 1)  # scan: 1 when it has findings
    # No certificate in the file, one small file: no cryptography, no process pool.
    not_needed = ["kustos.rotation", "kustos.audit", "cryptography", "multiprocessing"]
    assert _present(modules, [*CLIENTS, *ADAPTERS, *not_needed]) == []


def test_help_summaries_are_the_commands_own() -> None:
    """Each stand-in of the command list says what the loaded command's help starts with."""
    for name, entry in COMMANDS.items():
        group = get_command(build_app(name))
        assert isinstance(group, typer.core.TyperGroup)
        loaded = group.get_command(typer.Context(group), name)
        assert loaded is not None, name
        shown = loaded.short_help or loaded.help or ""
        first = " ".join(shown.strip().split("\n\n")[0].split())
        assert first == entry.summary, name
        assert entry.group == isinstance(loaded, typer.core.TyperGroup), name


def test_version_option_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"{__version__}\n"
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"{__version__}\n"
    assert main(["--version", "scan"]) == 0  # the option of the Typer app, eager
    assert capsys.readouterr().out == f"{__version__}\n"


def test_help_lists_every_command_and_the_version_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--version" in out
    for name in [*COMMANDS, "version"]:
        assert f" {name} " in out, name
