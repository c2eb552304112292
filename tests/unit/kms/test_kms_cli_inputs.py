"""``kustos kms`` with bad input, as a new user would give it: one line, the right exit code.

Aspects:
- every file the kms commands read or write (passphrase, PIN, identity, keyring, key
  export output, import input) that is missing, a folder or in a missing folder: exit 2
  (exit 1 for a keyring a key store cannot open), one ``kustos: error:`` line naming the
  path, no traceback; a missing backup is "no such file", never "cannot decrypt";
- ``--format xml`` and ``--log-format xml`` are refused by the parser (exit 2), nothing
  printed on stdout; ``keys list --format json`` is JSON;
- the key-store flags are one settings object for the group: before or after the
  command's name they mean the same; ``hoist_options`` moves only those flags;
- every ``kms keys`` command closes the provider it opened (also when it fails);
- canary: the passphrase and the key material appear in no output of these failures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyrage
import pytest

import kustos.cli.kms as cli_kms
from kustos.cli.kms import hoist_options
from kustos.cli.main import main
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive
from tests.unit.kms.stores import init_keyring

PASSPHRASE = "canary-passphrase-3f1b7c"


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    return init_keyring(tmp_path, PASSPHRASE)


def _material(store: list[str]) -> str:
    ring = LocalKeyring(Path(store[1]), Sensitive(PASSPHRASE))
    return str(json.loads(ring.export_payload())["keys"][0]["material"])


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("kustos: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("kustos: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_bad_files_are_one_line_naming_the_path(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring, passphrase = store[1], store[3]
    folder = tmp_path / "a-folder"
    folder.mkdir(mode=0o700)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    identity = tmp_path / "id.txt"
    identity.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    identity.chmod(0o600)
    cases: list[tuple[list[str], int, str]] = [
        (["keys", "list", "--keyring", ring, "--passphrase-file", str(tmp_path / "none")],
         2, str(tmp_path / "none")),
        (["keys", "list", "--keyring", ring, "--passphrase-file", str(folder)], 2, str(folder)),
        (["keys", "list", "--keyring", str(tmp_path / "gone.json"), "--passphrase-file",
          passphrase], 1, "does not exist"),
        (["keys", "list", "--keyring", str(folder), "--passphrase-file", passphrase],
         2, str(folder)),
        (["keys", "export", *store, "--recipient", recipient, "-o",
          str(tmp_path / "no-dir" / "x.age")], 2, str(tmp_path / "no-dir" / "x.age")),
        (["keys", "export", *store, "--recipient", recipient, "-o", str(folder)],
         2, str(folder)),
        (["keys", "import", str(tmp_path / "missing.age"), "--identity-file", str(identity),
          "--keyring", str(tmp_path / "new.json"), "--passphrase-file", passphrase],
         2, "missing.age: cannot read key export: no such file"),
        (["keys", "import", str(folder), "--identity-file", str(identity), "--keyring",
          str(tmp_path / "new.json"), "--passphrase-file", passphrase], 2, str(folder)),
        (["keys", "import", ring, "--identity-file", str(tmp_path / "no-id"), "--keyring",
          str(tmp_path / "new.json"), "--passphrase-file", passphrase],
         2, str(tmp_path / "no-id")),
        (["keys", "list", "--pkcs11-module", str(tmp_path / "x.so"), "--pkcs11-token", "t",
          "--pkcs11-pin-file", str(tmp_path / "no-pin")], 2, str(tmp_path / "no-pin")),
    ]  # fmt: skip
    material = _material(store)
    for argv, code, needle in cases:
        got, out, err = _run(["kms", *argv], capsys)
        assert got == code, (argv, err)
        line = _one_line(err)
        assert needle in line, (argv, line)
        assert "cannot decrypt" not in line
        assert PASSPHRASE not in out + err
        assert material not in out + err
    assert not (tmp_path / "new.json").exists()


def test_a_malformed_identity_is_named_by_line_never_quoted(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = tmp_path / "id.txt"
    bad = "AGE-SECRET-KEY-1NOTAKEYCANARY"
    identity.write_text(f"# comment\n{bad}\n")
    identity.chmod(0o600)
    code, _, err = _run(
        ["kms", "keys", "import", store[1], "--identity-file", str(identity),
         "--keyring", str(tmp_path / "new.json"), "--passphrase-file", store[3]],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert f"{identity}:2: not an age identity" in _one_line(err)
    assert bad not in err


def test_invalid_choices_are_refused_by_the_parser(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["kms", "keys", "list", *store, "--format", "xml"], capsys)
    assert code == 2
    assert out == ""
    assert "--format" in _one_line(err)
    code, out, err = _run(
        ["kms", "serve", "--socket", str(tmp_path / "s.sock"), *store, "--log-format", "xml"],
        capsys,
    )
    assert code == 2
    assert "--log-format" in _one_line(err)
    code, out, _ = _run(["kms", "keys", "list", *store, "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["keys"][0]["state"] == "current"


def test_store_flags_mean_the_same_before_or_after_the_command(
    store: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    after = _run(["kms", "keys", "list", *store, "--format", "json"], capsys)
    before = _run(["kms", *store, "keys", "list", "--format", "json"], capsys)
    mixed = _run(
        ["kms", "keys", store[0] + "=" + store[1], "list", store[2], store[3], "--format", "json"],
        capsys,
    )
    assert after[0] == before[0] == mixed[0] == 0
    assert after[1] == before[1] == mixed[1]


def test_hoist_options_moves_only_the_group_flags() -> None:
    names = {"--keyring", "--passphrase-file"}
    assert hoist_options(
        ["keys", "retire", "kek-1", "--keyring", "r", "--force", "--passphrase-file=p"], names
    ) == ["--keyring", "r", "--passphrase-file=p", "keys", "retire", "kek-1", "--force"]
    assert hoist_options(["keys", "import", "--", "--keyring"], names) == [
        "keys",
        "import",
        "--",
        "--keyring",
    ]
    assert hoist_options(["serve", "--keyring"], names) == ["--keyring", "serve"]


class _Counting(LocalKeyring):
    closed = 0

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_every_keys_command_closes_its_provider(
    store: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_kms, "LocalKeyring", _Counting)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    commands = [
        (["keys", "rotate", *store], 0),
        (["keys", "list", *store], 0),
        (["keys", "retire", "kek-9999-00000000", *store], 1),  # fails: closed all the same
        (["keys", "export", *store, "--recipient", recipient, "-o", str(tmp_path / "b.age")], 0),
        (["keys", "init", *store], 1),  # already exists
    ]
    for number, (argv, code) in enumerate(commands, 1):
        got, _, err = _run(["kms", *argv], capsys)
        assert got == code, (argv, err)
        assert _Counting.closed == number, argv
