"""Bad input to ``kustos kms sealing-key`` and to ``kustos seal``/``unseal``'s options.

Aspects: each malformed input is one ``kustos: error:`` line, a non-zero exit, nothing on
stdout, no traceback, and nothing written half-way:
- ``sealing-key``: create before ``keys init`` or twice, rotate before create, a key id
  that is blank or holds a newline (quoted back on one line), an unknown or the current
  key, ``--format xml``, reseal without files, with a missing file, a folder, a file
  that is not YAML or not sealed for the store (no file rewritten, the keyring unchanged),
  a missing passphrase file, a wrong passphrase, keyring and PKCS#11 flags together;
- ``seal``: an ``--output-dir`` that is missing or a file, two ``-f`` files with one name,
  stdin with ``--output-dir``, a bad second file (the first is not written), ``-o`` or
  ``-f`` with ``--reseal`` (the file is not rewritten), a namespace or name the API
  server would refuse;
- ``unseal``: a bad second file with ``--output-dir`` (the first is not written), a
  missing ``--output-dir``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from kustos.cli.main import main
from tests.unit.kms.stores import init_keyring
from tests.unit.sources.sealkit import CANARY, Key, secret_manifest
from tests.unit.sources.test_seal_cli import _fails, _run, _seal, key  # noqa: F401 - a fixture

PASSPHRASE = "sealing-pass-canary-91d2"


def _refused(capsys: pytest.CaptureFixture[str], *argv: str, reason: str, code: int) -> str:
    """Exit *code*, one error line holding *reason*, nothing on stdout, no secrets."""
    got, out, err = _run(capsys, *argv)
    assert got == code, err
    assert out == ""
    assert err.startswith("kustos: error: ")
    assert err.count("\n") == 1, err
    assert reason in err, err
    assert "Traceback" not in err
    assert PASSPHRASE not in err
    assert CANARY not in err
    return err


def _digest(folder: Path) -> dict[str, str]:
    """Every file under *folder* and its content hash: proof that nothing was written."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def ring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """A keyring with one sealing key; its store flags."""
    folder = tmp_path / "store"
    folder.mkdir()
    flags = init_keyring(folder, PASSPHRASE)
    assert main(["kms", "sealing-key", "create", *flags]) == 0
    capsys.readouterr()
    return flags


# --------------------------------------------------------------------------- sealing-key
def test_sealing_key_lifecycle_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    (folder / "pass").write_text(PASSPHRASE + "\n")
    (folder / "pass").chmod(0o600)
    flags = ["--keyring", str(folder / "ring.json"), "--passphrase-file", str(folder / "pass")]
    _refused(capsys, "kms", "sealing-key", "create", *flags, reason="does not exist", code=1)
    assert not (folder / "ring.json").exists(), "no keyring made by a refused command"
    assert main(["kms", "keys", "init", *flags]) == 0
    capsys.readouterr()
    _refused(capsys, "kms", "sealing-key", "rotate", *flags, reason="no sealing key", code=1)
    assert main(["kms", "sealing-key", "create", *flags]) == 0
    capsys.readouterr()
    before = _digest(folder)
    _refused(capsys, "kms", "sealing-key", "create", *flags, reason="already has", code=1)
    assert _digest(folder) == before


def test_sealing_key_retire_refuses_odd_ids_on_one_line(
    capsys: pytest.CaptureFixture[str], ring: list[str], tmp_path: Path
) -> None:
    before = _digest(tmp_path / "store")
    for odd in ("", "   ", "seal-1\nkustos: error: forged"):
        err = _refused(
            capsys, "kms", "sealing-key", "retire", odd, *ring, reason="is not a key id", code=2
        )
        assert "forged\n" not in err.removesuffix("\n")
    _refused(capsys, "kms", "keys", "retire", "a b", *ring, reason="is not a key id", code=2)
    _refused(
        capsys, "kms", "sealing-key", "retire", "seal-9999-0000", *ring, reason="no sealing key",
        code=1,
    )  # fmt: skip
    capsys.readouterr()
    assert main(["kms", "sealing-key", "list", "--format", "json", *ring]) == 0
    current = yaml.safe_load(capsys.readouterr().out)["sealing_keys"][0]["key_id"]
    _refused(
        capsys, "kms", "sealing-key", "retire", current, *ring, reason="current sealing key",
        code=1,
    )  # fmt: skip
    _refused(
        capsys, "kms", "sealing-key", "list", "--format", "xml", *ring, reason="--format", code=2
    )
    assert _digest(tmp_path / "store") == before


def test_sealing_key_store_flag_mistakes(
    capsys: pytest.CaptureFixture[str], ring: list[str], tmp_path: Path
) -> None:
    keyring = ring[1]
    _refused(
        capsys, "kms", "sealing-key", "list", "--keyring", keyring,
        reason="--keyring needs --passphrase-file", code=2,
    )  # fmt: skip
    _refused(
        capsys, "kms", "sealing-key", "list", "--keyring", keyring, "--passphrase-file",
        str(tmp_path / "nope"), reason="nope: cannot read passphrase file", code=2,
    )  # fmt: skip
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    _refused(
        capsys, "kms", "sealing-key", "list", "--keyring", keyring, "--passphrase-file",
        str(wrong), reason="wrong passphrase", code=1,
    )  # fmt: skip
    _refused(
        capsys, "kms", "sealing-key", "list", *ring, "--pkcs11-token", "t",
        reason="not both", code=2,
    )  # fmt: skip


def test_sealing_key_reseal_mistakes_rewrite_nothing(
    capsys: pytest.CaptureFixture[str], ring: list[str], tmp_path: Path
) -> None:
    stranger = Key()
    pub = tmp_path / "stranger.pub"
    pub.write_text(stranger.public + "\n")
    files = tmp_path / "files"
    files.mkdir()
    (files / "secret.yaml").write_text(yaml.safe_dump(secret_manifest()))
    assert main(["seal", "-f", str(files / "secret.yaml"), "-R", str(pub),
                 "-o", str(files / "foreign.yaml")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["kms", "sealing-key", "list", "--format", "json", *ring]) == 0
    recipient = yaml.safe_load(capsys.readouterr().out)["sealing_keys"][0]["recipient"]
    assert main(["seal", "-f", str(files / "secret.yaml"), "-r", recipient,
                 "-o", str(files / "ours.yaml")]) == 0  # fmt: skip
    capsys.readouterr()
    (files / "broken.yaml").write_text("spec: [unclosed\n")
    before = _digest(tmp_path)
    reseal = ["kms", "sealing-key", "reseal", *ring]
    _refused(capsys, *reseal, reason="Missing argument", code=2)
    ours = str(files / "ours.yaml")
    _refused(capsys, *reseal, ours, str(files / "gone.yaml"), reason="gone.yaml", code=2)
    _refused(capsys, *reseal, ours, str(files), reason="is a directory", code=2)
    _refused(capsys, *reseal, ours, str(files / "broken.yaml"), reason="broken.yaml:1", code=2)
    _refused(capsys, *reseal, ours, str(files / "foreign.yaml"), reason="foreign.yaml", code=2)
    assert _digest(tmp_path) == before, "every file is checked before any is rewritten"


# --------------------------------------------------------------------------- seal
def test_seal_output_dir_mistakes_write_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,  # noqa: F811 - the fixture imported above
) -> None:
    pub = str(tmp_path / "cluster.pub")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "secret.yaml").write_text(yaml.safe_dump(secret_manifest()))
    (tmp_path / "other.yaml").write_text(
        yaml.safe_dump(secret_manifest(metadata={"name": "other", "namespace": "prod"}))
    )
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    out = tmp_path / "out"
    src = str(tmp_path / "secret.yaml")
    _fails(capsys, "seal", "-f", src, "-R", pub, "--output-dir", str(out), reason="does not exist")
    (tmp_path / "plain").write_text("x")
    _fails(
        capsys, "seal", "-f", src, "-R", pub, "--output-dir", str(tmp_path / "plain"),
        reason="is not a folder",
    )  # fmt: skip
    out.mkdir()
    _fails(
        capsys, "seal", "-f", src, "-f", str(tmp_path / "sub" / "secret.yaml"), "-R", pub,
        "--output-dir", str(out), reason="have the same name",
    )  # fmt: skip
    _fails(
        capsys, "seal", "-f", "-", "-f", src, "-R", pub, "--output-dir", str(out),
        reason="stdin",
    )  # fmt: skip
    _fails(
        capsys, "seal", "-f", str(tmp_path / "other.yaml"), "-f", str(tmp_path / "cm.yaml"),
        "-R", pub, "--output-dir", str(out), reason="is not a v1 Secret",
    )  # fmt: skip
    assert list(out.iterdir()) == [], "the good first file is not written either"


def test_seal_refuses_options_that_reseal_would_ignore(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,  # noqa: F811 - the fixture imported above
) -> None:
    sealed = _seal(capsys, tmp_path)
    before = sealed.read_bytes()
    other = Key().public
    for extra in (["-o", str(tmp_path / "x.yaml")], ["-f", str(sealed)], ["-n", "prod"]):
        _fails(
            capsys, "seal", "--reseal", str(sealed), "-r", other, "-i", str(tmp_path / "key.txt"),
            *extra, reason="do not go with --reseal",
        )  # fmt: skip
    assert sealed.read_bytes() == before
    assert not (tmp_path / "x.yaml").exists()


def test_seal_refuses_names_the_api_server_would_refuse(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,  # noqa: F811 - the fixture imported above
) -> None:
    pub = str(tmp_path / "cluster.pub")
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(secret_manifest(metadata={"name": "db"})))
    _fails(capsys, "seal", "-f", str(bare), "-R", pub, "-n", "Bad_NS", reason="'Bad_NS' is not")
    _fails(capsys, "seal", "-f", str(bare), "-R", pub, "-n", "a.b", reason="namespace 'a.b'")
    spaced = tmp_path / "spaced.yaml"
    spaced.write_text(
        yaml.safe_dump(secret_manifest(metadata={"name": "My DB", "namespace": "prod"}))
    )
    _fails(capsys, "seal", "-f", str(spaced), "-R", pub, reason="metadata.name 'My DB'")


# --------------------------------------------------------------------------- unseal
def test_unseal_output_dir_mistakes_write_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,  # noqa: F811 - the fixture imported above
) -> None:
    sealed = _seal(capsys, tmp_path)
    (tmp_path / "broken.yaml").write_text("sops: [\n")
    ident = str(tmp_path / "key.txt")
    out = tmp_path / "opened"
    _fails(capsys, "unseal", "-i", ident, str(sealed), "--output-dir", str(out),
           reason="does not exist")  # fmt: skip
    out.mkdir()
    _fails(
        capsys, "unseal", "-i", ident, str(sealed), str(tmp_path / "broken.yaml"),
        "--output-dir", str(out), reason="broken.yaml:1",
    )  # fmt: skip
    assert list(out.iterdir()) == [], "the first Secret is not written either"
