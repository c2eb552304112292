"""Backup files: encrypted, owner-only writes; folders with time-stamped files and --keep.

Aspects covered:
- a written backup is mode 0600, opens with the identity and verifies, and holds no
  value in clear (canary);
- ``-`` reads the backup from stdin (verify; a truncated stream is refused, exit 1);
- a folder as ``--output`` gets ``kustos-backup-<UTC time>.age``; ``prune`` keeps the N
  newest of those and touches no other file.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import pytest

from kustos.backup import archive
from kustos.backup import format as fmt
from kustos.cli.main import main
from kustos.crypto import age
from tests.unit.backup.objects import CANARY, secret


def test_written_backups_are_private_and_open(tmp_path: Path) -> None:
    public, identity = age.new_identity()
    entries = [fmt.Entry.of(fmt.clean_secret(secret("a")))]
    plaintext, _ = fmt.pack(
        entries,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        kustos_version="0.1.0",
        cluster=fmt.Cluster(),
        selection=fmt.Selection(),
        excluded={},
    )
    path = tmp_path / "b.age"
    archive.write_backup(path, plaintext, recipients=[age.Recipient.parse(public, where="r")])
    assert path.stat().st_mode & 0o777 == 0o600
    assert CANARY.encode() not in path.read_bytes()
    ids = age.Identities.parse(identity.reveal(), source="key")
    backup = archive.open_backup(path, identities=ids)
    assert [str(e) for e in backup.entries] == ["Secret app/a"]


def test_folders_get_time_stamped_files_and_keep_prunes(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 3, 2, 17, 5, tzinfo=dt.UTC)
    assert archive.destination(tmp_path, now) == tmp_path / "kustos-backup-20261203T021705Z.age"
    assert archive.destination(tmp_path / "f.age", now) == tmp_path / "f.age"
    for day in range(1, 6):
        (tmp_path / f"kustos-backup-202612{day:02d}T000000Z.age").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("mine")
    deleted = archive.prune(tmp_path, 2)
    assert [p.name for p in deleted] == [
        f"kustos-backup-202612{d:02d}T000000Z.age" for d in (1, 2, 3)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kustos-backup-20261204T000000Z.age",
        "kustos-backup-20261205T000000Z.age",
        "notes.txt",
    ]


def test_dash_reads_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    public, identity = age.new_identity()
    entries = [fmt.Entry.of(fmt.clean_secret(secret("a")))]
    plaintext, _ = fmt.pack(
        entries,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        kustos_version="0.1.0",
        cluster=fmt.Cluster(),
        selection=fmt.Selection(),
        excluded={},
    )
    data = age.encrypt(plaintext, [age.Recipient.parse(public, where="r")])
    key = tmp_path / "key.txt"
    key.write_bytes(identity.reveal() + b"\n")
    key.chmod(0o600)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["backup", "verify", "-", "-i", str(key)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<stdin>: OK, every hash and count verified")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data[:-30])))
    assert main(["backup", "verify", "-", "-i", str(key)]) == 1
    assert "<stdin>: damaged or truncated" in capsys.readouterr().err
