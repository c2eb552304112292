"""``kustos backup`` command line: what is refused before any cluster is contacted.

Aspects covered:
- create: no recipient, recipients and a passphrase together, ``-n`` with ``-A``,
  ``--keep`` without a folder, a malformed recipient among good ones (the whole backup is
  refused, exit 2, nothing written);
- keygen: refuses to overwrite an identity; verify/restore: no key, or both kinds;
- the bad-input sweep, every command and every malformed input, each refused before any
  cluster is contacted (the kubeconfig given does not exist) or any file is written: a
  missing, unreadable (a folder), binary or empty recipients, identity, passphrase or
  backup file; a public key given as identity; a bad recipient; an ``--output`` folder
  that does not exist; a bad ``--namespace``, ``--selector``, ``--namespace-map`` (syntax,
  invalid or repeated names, a FROM the backup does not hold) or ``--only`` (syntax,
  invalid names); an unknown ``--format`` or ``--conflict``; a garbage, empty or truncated
  backup and a wrong key (exit 1);
- every refusal is one line on stderr, naming what to do, never a key, no traceback, and
  nothing on stdout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from kustos.backup import archive
from kustos.backup import format as fmt
from kustos.cli.main import main
from kustos.crypto import age
from tests.unit.backup.objects import CANARY, secret


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_create_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, secret = age.new_identity()
    out = str(tmp_path / "b.age")
    phrase = tmp_path / "p"
    phrase.write_text("words\n")
    assert "no recipient" in _refused(capsys, "backup", "create", "-o", out)
    assert "not both" in _refused(
        capsys, "backup", "create", "-o", out, "-r", good, "--passphrase-file", str(phrase)
    )
    assert "not both" in _refused(
        capsys, "backup", "create", "-o", out, "-r", good, "-n", "a", "-A"
    )
    assert "--keep needs --output to be a folder" in _refused(
        capsys, "backup", "create", "-o", out, "-r", good, "--keep", "3"
    )
    message = _refused(
        capsys, "backup", "create", "-o", out, "-r", good, "-r", secret.reveal_text()
    )
    assert message.startswith("kustos: error: --recipient #2:")
    assert secret.reveal_text() not in message
    assert not (tmp_path / "b.age").exists()


def test_keygen_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "key.txt"
    assert main(["backup", "keygen", "-o", str(path)]) == 0
    first = path.read_bytes()
    public = capsys.readouterr().out.strip()
    assert public.startswith("age1")
    assert public in first.decode()
    assert "exists" in _refused(capsys, "backup", "keygen", "-o", str(path))
    assert path.read_bytes() == first


def test_openers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(tmp_path / "b.age")
    phrase = tmp_path / "p"
    phrase.write_text("words\n")
    assert "no key" in _refused(capsys, "backup", "verify", file)
    assert "not both" in _refused(
        capsys, "backup", "restore", file, "-i", str(phrase), "--passphrase-file", str(phrase)
    )
    assert "FROM=TO" in _refused(
        capsys, "backup", "restore", file, "--passphrase-file", str(phrase), "--namespace-map", "x"
    )


# --------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class Files:
    """A good backup with its key, and every kind of bad file beside them."""

    folder: Path
    backup: Path
    identity: Path
    recipient: str


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.chdir(tmp_path)
    public, identity = age.new_identity()
    key = tmp_path / "key.txt"
    key.write_text(identity.reveal_text() + "\n")
    key.chmod(0o600)
    plaintext, _ = fmt.pack(
        [fmt.Entry.of(fmt.clean_secret(secret("a")))],
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        kustos_version="0.1.0",
        cluster=fmt.Cluster(),
        selection=fmt.Selection(namespaces=["app"]),
        excluded={},
    )
    backup = tmp_path / "good.age"
    archive.write_backup(backup, plaintext, recipients=[age.Recipient.parse(public, where="r")])
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "blank-line").write_bytes(b"\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "public.txt").write_text(public + "\n")
    (tmp_path / "public.txt").chmod(0o600)  # a private file: refused for what it holds
    (tmp_path / "bad-recipients.txt").write_text(f"{public}\nage1notakey\n")
    (tmp_path / "cut.age").write_bytes(backup.read_bytes()[:-40])
    return Files(tmp_path, backup, key, public)


def _sweep_case(files: Files, argv: list[str]) -> list[str]:
    """*argv* with ``{backup}``, ``{key}`` and ``{recipient}`` filled in."""
    values = {"backup": files.backup.name, "key": files.identity.name, "recipient": files.recipient}
    return [a.format(**values) for a in argv]


CREATE = ["backup", "create", "-o", "out.age", "-r", "{recipient}"]
RESTORE = ["backup", "restore", "{backup}", "-i", "{key}", "--dry-run"]
REFUSED = [
    (["backup", "create", "-o", "out.age", "-R", "missing.txt"], "missing.txt: cannot read"),
    (["backup", "create", "-o", "out.age", "-R", "a-folder"], "a-folder: cannot read"),
    (["backup", "create", "-o", "out.age", "-R", "garbage.bin"], "garbage.bin: a recipients"),
    (["backup", "create", "-o", "out.age", "-R", "empty"], "empty: no recipient"),
    (["backup", "create", "-o", "out.age", "-R", "bad-recipients.txt"], "bad-recipients.txt:2:"),
    (["backup", "create", "-o", "out.age", "-r", "age1notakey"], "--recipient #1: not an age"),
    (["backup", "create", "-o", "out.age", "--passphrase-file", "empty"], "empty: the passph"),
    (["backup", "create", "-o", "out.age", "--passphrase-file", "blank-line"], "is empty"),
    (["backup", "create", "-o", "out.age", "--passphrase-file", "missing"], "missing: cannot"),
    (["backup", "create", "-o", "out.age", "--passphrase-file", "a-folder"], "a-folder: cannot"),
    (["backup", "create", "-o", "nowhere/out.age", "-r", "{recipient}"], "nowhere does not"),
    ([*CREATE, "-n", "Bad_Name"], "--namespace: 'Bad_Name' is not a namespace name"),
    ([*CREATE, "-n", "x" * 64], "is not a namespace name"),
    ([*CREATE, "-l", "a in (b"], "--selector: 'a in (b' is not a label selector term"),
    (["backup", "keygen", "-o", "nowhere/key.txt"], "the folder does not exist"),
    (["backup", "keygen", "-o", "a-folder"], "a-folder: exists"),
    (["backup", "verify", "{backup}", "-i", "missing"], "missing: cannot read identity file"),
    (["backup", "verify", "{backup}", "-i", "a-folder"], "a-folder: cannot read identity file"),
    (["backup", "verify", "{backup}", "-i", "garbage.bin"], "not an identity file"),
    (["backup", "verify", "{backup}", "-i", "empty"], "empty: no identity"),
    (["backup", "verify", "{backup}", "-i", "public.txt"], "public.txt:1: not an age X25519"),
    (["backup", "restore", "{backup}", "--passphrase-file", "empty"], "empty: the passphrase"),
    (["backup", "verify", "missing.age", "-i", "{key}"], "missing.age: cannot read backup"),
    (["backup", "restore", "a-folder", "-i", "{key}"], "a-folder: cannot read backup"),
    (["backup", "verify", "{backup}", "-i", "{key}", "--format", "xml"], "'--format'"),
    ([*RESTORE, "--namespace-map", "app"], "--namespace-map 'app': give FROM=TO"),
    ([*RESTORE, "--namespace-map", "=x"], "give FROM=TO"),
    ([*RESTORE, "--namespace-map", "app=Bad_NS"], "--namespace-map TO: 'Bad_NS' is not"),
    ([*RESTORE, "--namespace-map", "a b=x"], "--namespace-map FROM: 'a b' is not"),
    ([*RESTORE, "--namespace-map", "app=x", "--namespace-map", "app=y"], "mapped twice"),
    ([*RESTORE, "--namespace-map", "ap=x"], "'ap' is not a namespace of good.age (it holds app)"),
    ([*RESTORE, "--only", "app"], "--only 'app': give NAMESPACE/NAME or NAMESPACE/*"),
    ([*RESTORE, "--only", "/a"], "give NAMESPACE/NAME"),
    ([*RESTORE, "--only", "app/a/b"], "give NAMESPACE/NAME"),
    ([*RESTORE, "--only", "App/a"], "--only: 'App' is not a namespace name"),
    ([*RESTORE, "--only", "app/A_"], "--only: 'A_' is not an object name"),
    ([*RESTORE, "--conflict", "maybe"], "'--conflict'"),
]


@pytest.mark.parametrize(("argv", "expected"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_bad_input_is_one_line_before_anything_happens(
    files: Files, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    before = sorted(p.name for p in files.folder.iterdir())
    assert main(_sweep_case(files, argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("kustos: error: "), err
    assert err.count("\n") == 1, err  # no warning first, no traceback after
    assert expected in err
    assert "no-such-kubeconfig" not in err  # refused before any cluster was asked
    assert sorted(p.name for p in files.folder.iterdir()) == before  # nothing written
    assert CANARY not in err
    assert files.identity.read_text().strip() not in err


DAMAGED = [
    (["backup", "verify", "garbage.bin", "-i", "{key}"], "garbage.bin: not an age file"),
    (["backup", "verify", "empty", "-i", "{key}"], "empty: not an age file"),
    (["backup", "restore", "cut.age", "-i", "{key}"], "cut.age: damaged or truncated"),
    (["backup", "restore", "{backup}", "--passphrase-file", "public.txt"], "give --identity"),
]


@pytest.mark.parametrize(("argv", "expected"), DAMAGED, ids=[" ".join(a) for a, _ in DAMAGED])
def test_a_backup_that_does_not_open_is_exit_1_and_restores_nothing(
    files: Files, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(_sweep_case(files, argv)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert expected in err
    assert "no-such-kubeconfig" not in err  # opened (and refused) before the cluster


def test_a_wrong_identity_is_exit_1(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    _, other = age.new_identity()
    stranger = files.folder / "other.txt"
    stranger.write_text(other.reveal_text() + "\n")
    stranger.chmod(0o600)
    assert main(["backup", "restore", files.backup.name, "-i", "other.txt"]) == 1
    err = capsys.readouterr().err
    assert "none of the identities in other.txt opens it" in err
    assert other.reveal_text() not in err
