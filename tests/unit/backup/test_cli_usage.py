"""``kustos backup`` command line: what is refused before any cluster is contacted.

Aspects covered:
- create: no recipient, recipients and a passphrase together, ``-n`` with ``-A``,
  ``--keep`` without a folder, a malformed recipient among good ones (the whole backup is
  refused, exit 2, nothing written);
- keygen: refuses to overwrite an identity; verify/restore: no key, or both kinds;
- every refusal is one line on stderr, naming what to do, never a key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kustos.cli.main import main
from kustos.crypto import age


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
