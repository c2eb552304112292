"""``kustos seal`` and ``kustos unseal`` as a person runs them.

Aspects: seal prints a SealedSecret (to stdout or ``-o``, from a file or stdin, for
``--recipient`` and ``--recipient-file`` keys) that unseal turns back into the Secret;
unseal takes its identity from ``--identity`` or ``SOPS_AGE_KEY_FILE`` and writes ``-o``
owner-only; every mistake (missing file, not YAML, several documents, not a Secret, no
recipient, a private key given as recipient, no identity, wrong identity, tampered value,
wrong MAC, moved or renamed copy) exits 2 with one ``kustos: error:`` line naming the file
and prints nothing on stdout; a file edited out of sorted order gets a warning; no value
appears on stderr.
"""

from __future__ import annotations

import io
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.cli.main import main
from kustos.crypto import sops
from tests.unit.sources.sealkit import CANARY, CANARY_B64, NOW, Key, secret_manifest, tamper


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def key(tmp_path: Path) -> Key:
    made = Key()
    (tmp_path / "key.txt").write_text(made.identity_text)
    (tmp_path / "key.txt").chmod(0o600)
    (tmp_path / "cluster.pub").write_text(f"# cluster\n{made.public}\n")
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(secret_manifest()))
    return made


def _seal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    code, out, err = _run(
        capsys, "seal", "-f", str(tmp_path / "secret.yaml"), "-R", str(tmp_path / "cluster.pub")
    )
    assert (code, err) == (0, "")
    sealed = tmp_path / "sealed.yaml"
    sealed.write_text(out)
    return sealed


def test_seal_then_unseal_gives_back_the_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key
) -> None:
    sealed = _seal(capsys, tmp_path)
    text = sealed.read_text()
    assert "kind: SealedSecret" in text
    assert "    namespace: prod\n" in text
    assert CANARY not in text
    assert CANARY_B64 not in text
    code, out, err = _run(capsys, "unseal", "--identity", str(tmp_path / "key.txt"), str(sealed))
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == {
        **secret_manifest(),
        "stringData": {"password": CANARY, "username": "admin"},
    }


def test_seal_reads_stdin_and_recipient_flags_and_writes_output(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = Key()
    stdin = io.TextIOWrapper(io.BytesIO((tmp_path / "secret.yaml").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    out_file = tmp_path / "out.yaml"
    code, out, err = _run(
        capsys,
        "seal",
        "-f",
        "-",
        "-r",
        key.public,
        "--recipient",
        backup.public,
        "-o",
        str(out_file),
    )
    assert (code, out) == (0, "")
    assert err == f"kustos: sealed prod/db for 2 recipient(s) into {out_file}\n"
    document = yaml.safe_load(out_file.read_text())
    assert [s["recipient"] for s in document["sops"]["age"]] == [key.public, backup.public]
    (tmp_path / "backup.txt").write_text(backup.identity_text)
    (tmp_path / "backup.txt").chmod(0o600)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "backup.txt"))
    private = tmp_path / "plain.yaml"
    code, out, err = _run(capsys, "unseal", str(out_file), "-o", str(private))
    assert (code, out, err) == (0, "", "")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    (tmp_path / "backup.txt").chmod(0o644)
    code, out, err = _run(capsys, "unseal", str(out_file))
    assert code == 0
    assert (
        err == f"kustos: warning: {tmp_path / 'backup.txt'} is readable by group or others (0644)\n"
    )
    assert yaml.safe_load(private.read_text())["stringData"]["password"] == CANARY


def _fails(capsys: pytest.CaptureFixture[str], *argv: str, reason: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert err.startswith("kustos: error: ")
    assert err.count("\n") == 1, err
    assert reason in err, err
    assert CANARY not in err
    assert CANARY_B64 not in err
    assert "Traceback" not in err
    return err


def test_seal_mistakes_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key
) -> None:
    pub, src = str(tmp_path / "cluster.pub"), str(tmp_path / "secret.yaml")
    _fails(
        capsys,
        "seal",
        "-f",
        str(tmp_path / "nope.yaml"),
        "-R",
        pub,
        reason="nope.yaml: cannot read",
    )
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    _fails(capsys, "seal", "-f", str(tmp_path / "bad.yaml"), "-R", pub, reason="bad.yaml:")
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    _fails(capsys, "seal", "-f", str(tmp_path / "two.yaml"), "-R", pub, reason="holds 2 documents")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    _fails(capsys, "seal", "-f", str(tmp_path / "empty.yaml"), "-R", pub, reason="empty")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    _fails(capsys, "seal", "-f", str(tmp_path / "cm.yaml"), "-R", pub, reason="is not a v1 Secret")
    _fails(capsys, "seal", "-f", src, reason="no recipient")
    _fails(
        capsys,
        "seal",
        "-f",
        src,
        "-r",
        key.secret,
        reason="--recipient #1: this is an age identity",
    )
    err = _fails(capsys, "seal", "-f", src, "-r", key.secret, reason="identity")
    assert key.secret not in err
    _fails(
        capsys, "seal", "-f", src, "-R", str(tmp_path / "none.pub"), reason="none.pub: cannot read"
    )
    leaked = tmp_path / "leaked.yaml"
    leaked.write_text(yaml.safe_dump(secret_manifest(stringData={"port": 5432, "p": CANARY})))
    _fails(capsys, "seal", "-f", str(leaked), "-R", pub, reason="stringData.port")


def test_unseal_mistakes_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key: Key,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    sealed = _seal(capsys, tmp_path)
    ident = str(tmp_path / "key.txt")
    document: dict[str, Any] = yaml.safe_load(sealed.read_text())

    def variant(name: str, change: Any) -> str:
        copy = yaml.safe_load(sealed.read_text())
        change(copy)
        path = tmp_path / name
        path.write_text(sops.to_yaml(copy))
        return str(path)

    _fails(capsys, "unseal", str(sealed), reason="no identity")
    _fails(
        capsys, "unseal", "-i", ident, str(tmp_path / "gone.yaml"), reason="gone.yaml: cannot read"
    )
    _fails(capsys, "unseal", "-i", ident, str(tmp_path / "secret.yaml"), reason="not encrypted")
    stranger = tmp_path / "stranger.txt"
    stranger.write_text(Key().identity_text)
    stranger.chmod(0o600)
    _fails(
        capsys, "unseal", "-i", str(stranger), str(sealed), reason="none of the given identities"
    )
    garbage = tmp_path / "garbage.txt"
    garbage.write_text(f"{CANARY}\n")
    garbage.chmod(0o600)
    _fails(capsys, "unseal", "-i", str(garbage), str(sealed), reason="garbage.txt:1: not an age")
    moved = variant("moved.yaml", lambda d: d["metadata"].update(namespace="staging"))
    _fails(capsys, "unseal", "-i", ident, moved, reason="staging/db was sealed for prod/db")
    renamed = variant("renamed.yaml", lambda d: d["metadata"].update(name="db2"))
    _fails(capsys, "unseal", "-i", ident, renamed, reason="prod/db2 was sealed for prod/db")
    password = document["spec"]["stringData"]["password"]
    tampered = variant(
        "tampered.yaml", lambda d: d["spec"]["stringData"].update(password=tamper(password))
    )
    _fails(
        capsys, "unseal", "-i", ident, tampered, reason="spec.stringData.password: the value fails"
    )
    bad_mac = variant("mac.yaml", lambda d: d["sops"].update(mac=tamper(d["sops"]["mac"])))
    _fails(capsys, "unseal", "-i", ident, bad_mac, reason="MAC does not authenticate")
    dropped = variant("dropped.yaml", lambda d: d["spec"]["stringData"].pop("username"))
    _fails(capsys, "unseal", "-i", ident, dropped, reason="MAC mismatch")


def test_unseal_warns_about_keys_the_api_server_will_reorder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: Key
) -> None:
    sealed = _seal(capsys, tmp_path)
    plain = sops.decrypt(yaml.safe_load(sealed.read_text()), key.identities).document
    plain["spec"]["stringData"]["aaa"] = "appended"
    rule = sops.Rule("encrypted_regex", r"^(data|stringData|kustos\.io/sealed-for)$")
    edited = sops.encrypt(plain, [key.recipient], now=NOW, rule=rule, mac_only_encrypted=True)
    sealed.write_text(sops.to_yaml(edited))
    code, out, err = _run(capsys, "unseal", "-i", str(tmp_path / "key.txt"), str(sealed))
    assert code == 0
    assert yaml.safe_load(out)["stringData"]["aaa"] == "appended"
    assert err.startswith("kustos: warning: ")
    assert "not in sorted order" in err
    assert CANARY not in err
