"""Resealing: a sealed file rewritten for new recipients, values and MAC untouched.

Aspects: ``sealing.reseal`` drops and adds recipients and keeps every encrypted value,
``lastmodified``, the MAC and the binding byte for byte (so ``sops`` still edits it and
the Git diff is the ``sops.age`` block only); a kept recipient's stanza is not rewritten;
an already-resealed file is reported unchanged; a moved, tampered or foreign file is
refused before anything is written; the CLI ``seal --reseal`` and ``kms sealing-key
reseal`` rewrite files in place (all checked first, then written); the published
recipient ConfigMap data parses; canary: no value in any output.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.cli.main import main
from kustos.crypto import sops
from kustos.errors import InputError
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive
from kustos.sources import sealing
from tests.unit.sources.sealkit import CANARY, CANARY_B64, NOW, Key, secret_manifest, tamper


def _body(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "sops"}


def test_reseal_swaps_recipients_and_keeps_values_and_mac() -> None:
    old, new, backup = Key(), Key(), Key()
    sealed = sealing.seal(secret_manifest(), [old.recipient, backup.recipient], now=NOW)
    result = sealing.reseal(
        sealed, backup.identities, add=[new.recipient], drop=[old.public], source="f"
    )
    assert result.changed
    assert result.before == (old.public, backup.public)
    assert result.after == (backup.public, new.public)
    out = result.document
    assert _body(out) == _body(sealed)  # every ENC[...] value, the binding, byte for byte
    for field in ("mac", "lastmodified", "encrypted_regex", "mac_only_encrypted", "version"):
        assert out["sops"][field] == sealed["sops"][field]
    assert out["sops"]["age"][0] == sealed["sops"]["age"][1]  # the kept stanza as it was
    assert sealing.unseal(out, new.identities)["stringData"]["password"] == CANARY
    with pytest.raises(sops.NoMatchingIdentityError):
        sealing.unseal(out, old.identities)
    again = sealing.reseal(out, new.identities, add=[new.recipient], drop=[old.public])
    assert not again.changed
    assert CANARY not in repr(result)
    assert CANARY_B64 not in repr(result)


def test_reseal_refuses_what_would_not_unseal() -> None:
    key, new = Key(), Key()
    sealed = sealing.seal(secret_manifest(), [key.recipient], now=NOW)
    moved = copy.deepcopy(sealed)
    moved["metadata"]["namespace"] = "dev"
    with pytest.raises(sealing.BindingError, match="was sealed for prod/db"):
        sealing.reseal(moved, key.identities, add=[new.recipient])
    tampered = copy.deepcopy(sealed)
    tampered["spec"]["stringData"]["password"] = tamper(tampered["spec"]["stringData"]["password"])
    with pytest.raises(sops.TamperedValueError) as info:
        sealing.reseal(tampered, key.identities, add=[new.recipient])
    assert CANARY not in str(info.value)
    with pytest.raises(sops.NoMatchingIdentityError):
        sealing.reseal(sealed, new.identities, add=[new.recipient])
    with pytest.raises(sealing.SealingError, match="no recipient would be left"):
        sealing.reseal(sealed, key.identities, add=[], drop=[key.public])


def test_published_recipients_round_trip() -> None:
    current, older = Key(), Key()
    data = sealing.published_data(current.public, [older.public], ["seal-0002-a", "seal-0001-b"])
    got, previous = sealing.published_recipients(data, source="ConfigMap kube-system/x")
    assert got.text == current.public
    assert [r.text for r in previous] == [older.public]
    with pytest.raises(InputError, match="has no recipient"):
        sealing.published_recipients({}, source="ConfigMap kube-system/x")
    assert sealing.configmap_ref("kube-system/kustos-sealing") == ("kube-system", "kustos-sealing")
    with pytest.raises(InputError, match="NAMESPACE/NAME"):
        sealing.configmap_ref("nonsense")


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(sops.to_yaml(document))
    return path


def test_cli_reseal_rewrites_in_place_after_checking_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = Key(), Key()
    (tmp_path / "old.txt").write_text(old.identity_text)
    (tmp_path / "old.txt").chmod(0o600)
    good = _write(tmp_path / "a.yaml", sealing.seal(secret_manifest(), [old.recipient], now=NOW))
    other = sealing.seal(secret_manifest(), [old.recipient], now=NOW)
    other["metadata"]["name"] = "renamed"
    bad = _write(tmp_path / "b.yaml", other)
    before = good.read_text(), bad.read_text()
    argv = ["seal", "--reseal", "-i", str(tmp_path / "old.txt"), "-r", new.public,
            "--drop-recipient", old.public]  # fmt: skip
    assert main([*argv, str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert "b.yaml" in err
    assert "was sealed for prod/db" in err
    assert (good.read_text(), bad.read_text()) == before  # nothing written
    assert main([*argv, str(good)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "resealed 1 of 1 file(s)" in err
    resealed = yaml.safe_load(good.read_text())
    assert [s["recipient"] for s in resealed["sops"]["age"]] == [new.public]
    assert sealing.unseal(resealed, new.identities)["stringData"]["password"] == CANARY
    assert main([*argv, str(good)]) == 2  # the old identity alone no longer opens it
    out, err = capsys.readouterr()
    assert "none of the given identities opens" in err
    assert CANARY not in out + err


def test_cli_reseal_needs_a_change_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["seal", "--reseal"]) == 2
    assert "needs the sealed files" in capsys.readouterr().err
    assert main(["seal", "--reseal", str(tmp_path / "x.yaml")]) == 2
    assert "needs a change" in capsys.readouterr().err
    assert main(["seal", str(tmp_path / "x.yaml")]) == 2
    assert "go with --reseal" in capsys.readouterr().err


def test_kms_sealing_key_reseal_moves_files_to_the_current_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("a passphrase\n")
    passphrase.chmod(0o600)
    store = ["--keyring", str(tmp_path / "ring.json"), "--passphrase-file", str(passphrase)]
    assert main(["kms", "keys", "init", *store]) == 0
    assert main(["kms", "sealing-key", "create", *store]) == 0
    ring = LocalKeyring(tmp_path / "ring.json", Sensitive("a passphrase"))
    first = ring.sealing_keys()[0]
    backup = Key()
    sealed = sealing.seal(
        secret_manifest(), [sops.Recipient.parse(first.recipient), backup.recipient], now=NOW
    )
    path = _write(tmp_path / "db.yaml", sealed)
    assert main(["kms", "sealing-key", "rotate", *store]) == 0
    capsys.readouterr()
    assert main(["kms", "sealing-key", "reseal", *store, str(path)]) == 0
    out, err = capsys.readouterr()
    current = LocalKeyring(tmp_path / "ring.json", Sensitive("a passphrase")).sealing_keys()[0]
    assert out == f"resealed 1 of 1 file(s) for {current.key_id}\n"
    resealed = yaml.safe_load(path.read_text())
    assert [s["recipient"] for s in resealed["sops"]["age"]] == [backup.public, current.recipient]
    assert main(["kms", "sealing-key", "retire", first.key_id, *store]) == 0
    assert sealing.unseal(resealed, backup.identities)["data"]["token"] == CANARY_B64
    out, err = capsys.readouterr()
    assert CANARY not in out + err
    assert "AGE-SECRET-KEY" not in out + err


def test_fetch_recipient_from_an_unreachable_cluster_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9",
                                                        "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )  # fmt: skip
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(secret_manifest()))
    code = main(["seal", "-f", str(tmp_path / "secret.yaml"), "--fetch-recipient",
                 "--kubeconfig", str(kubeconfig)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert "ConfigMap kube-system/kustos-sealing" in err
    assert err.count("\n") == 1
