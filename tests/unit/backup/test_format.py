"""Backup format: cleaning, the tar with manifest and objects, and verification.

Aspects covered:
- Secrets lose what the API server sets (uid, resourceVersion, timestamps, managedFields)
  and keep type, data, labels, annotations and ``immutable``; values wrapped in
  ``Sensitive`` leave as base64; Namespaces lose the label the server sets;
- ``pack`` then ``read`` gives the same entries, in kind order, with counts that include
  version Secrets; ``objects.json`` is a ``v1`` List that a standard JSON reader opens;
- verification names the first problem: an object whose content was changed (hash), a
  missing file, an unexpected member, a count that disagrees, another format, a file
  that is not a tar; an ``Entry`` never shows its body (canary).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile

import pytest

from kustos.backup import format as fmt
from kustos.conventions import LABEL_MANAGED_SECRET, LABEL_VERSION
from kustos.errors import BackupError
from kustos.sensitive import Sensitive
from tests.unit.backup.objects import CANARY, secret

NOW = dt.datetime(2026, 12, 3, 1, 0, tzinfo=dt.UTC)


def _entries() -> list[fmt.Entry]:
    version = secret("db-v2", labels={LABEL_MANAGED_SECRET: "db", LABEL_VERSION: "2"})
    return [
        fmt.Entry.of(fmt.clean_secret(secret("a"))),
        fmt.Entry.of(fmt.clean_secret(version)),
        fmt.Entry.of(fmt.clean_namespace({"metadata": {"name": "app"}})),
    ]


def _pack(entries: list[fmt.Entry]) -> bytes:
    plaintext, _ = fmt.pack(
        entries,
        created=NOW,
        kustos_version="0.1.0",
        cluster=fmt.Cluster(server="https://127.0.0.1:6443", id="uid-1"),
        selection=fmt.Selection(),
        excluded={},
    )
    return plaintext


def _members(plaintext: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(plaintext)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_secrets_are_cleaned_of_server_fields() -> None:
    body = secret("a", labels={"team": "x"}, annotations={"note": "y"}, immutable=True)
    body["data"] = {"k": Sensitive(b"\x00\xff binary")}
    cleaned = fmt.clean_secret(body)
    assert cleaned == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "a",
            "namespace": "app",
            "labels": {"team": "x"},
            "annotations": {"note": "y"},
        },
        "type": "Opaque",
        "data": {"k": "AP8gYmluYXJ5"},
        "immutable": True,
    }
    namespace = fmt.clean_namespace(
        {"metadata": {"name": "app", "uid": "u", "labels": {"kubernetes.io/metadata.name": "app"}}}
    )
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}


def test_pack_and_read_round_trip() -> None:
    plaintext = _pack(_entries())
    backup = fmt.read(plaintext, source="b.age")
    assert [str(e) for e in backup.entries] == [
        "Namespace app",
        "Secret app/a",
        "Secret app/db-v2",
    ]
    assert backup.manifest.counts == {
        "Namespace": 1,
        "ManagedSecret": 0,
        "Secret": 2,
        "versionSecrets": 1,
    }
    assert backup.manifest.cluster.server == "https://127.0.0.1:6443"
    members = _members(plaintext)
    assert list(members) == ["manifest.json", "objects.json"]
    listing = json.loads(members["objects.json"])
    assert listing["kind"] == "List"
    assert len(listing["items"]) == 3
    assert CANARY not in repr(backup.entries)
    assert CANARY not in members["manifest.json"].decode()


def test_a_changed_object_is_named() -> None:
    members = _members(_pack(_entries()))
    members["objects.json"] = members["objects.json"].replace(
        b'"namespace":"app"}', b'"namespace":"app","labels":{"x":"1"}}', 1
    )
    with pytest.raises(
        BackupError, match=r"^b\.age: Secret app/a: content does not match its hash$"
    ):
        fmt.read(_tar(members), source="b.age")


def test_structural_problems_are_named() -> None:
    members = _members(_pack(_entries()))
    with pytest.raises(BackupError, match=r"objects\.json is missing"):
        fmt.read(_tar({"manifest.json": members["manifest.json"]}), source="b.age")
    with pytest.raises(BackupError, match="unexpected entry 'extra'"):
        fmt.read(_tar({**members, "extra": b"x"}), source="b.age")
    manifest = json.loads(members["manifest.json"])
    manifest["counts"]["Secret"] = 3
    with pytest.raises(BackupError, match="2 Secret object"):
        fmt.read(_tar({**members, "manifest.json": json.dumps(manifest).encode()}), source="b")
    manifest["format"] = "kustos.io/backup/v9"
    with pytest.raises(BackupError, match=r"is not kustos\.io/backup/v1"):
        fmt.read(_tar({**members, "manifest.json": json.dumps(manifest).encode()}), source="b")
    with pytest.raises(BackupError, match="not a tar"):
        fmt.read(b"plain text, not a tar" * 40, source="b")
