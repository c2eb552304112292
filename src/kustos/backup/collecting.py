"""Read what a backup takes from a live cluster, and write the backup file (an adapter).

Objects are read through :func:`kustos.kube.listing.list_cluster` (paginated list calls,
Secret values wrapped in ``Sensitive`` on the way in), then chosen and cleaned by
:mod:`kustos.backup.selecting`. A ManagedSecret caught in the middle of a rotation is read
again a few times before the backup is refused: restoring a live Secret that disagrees
with its history would be worse than no backup.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from kustos import __version__
from kustos.backup import format as fmt
from kustos.backup.archive import write_backup
from kustos.backup.selecting import Selection, Selector, inconsistencies, select
from kustos.crypto.age import Recipient
from kustos.errors import BackupError, KubeError, KubeNotFoundError
from kustos.kube.client import api_errors
from kustos.kube.index import ObjectIndex
from kustos.kube.listing import list_cluster
from kustos.sensitive import Sensitive

Progress = Callable[[str], None]
#: Reads of a family caught mid-rotation before the backup is refused.
ATTEMPTS: Final = 3
PAUSE: Final = 2.0


def cluster_id(client: Client) -> str:
    """The uid of ``kube-system``: stable for the life of a cluster, the usual cluster id."""
    try:
        with api_errors("read Namespace kube-system", verb="get", resource="namespaces"):
            meta = client.get(Namespace, "kube-system").metadata
    except KubeError:
        return ""  # not allowed to read it: the manifest simply has no id
    return (meta.uid or "") if meta is not None else ""


def collect(
    client: Client,
    *,
    namespaces: Sequence[str] = (),
    selector: Selector,
    progress: Progress,
) -> Selection:
    """List and choose the objects of a backup; ``BackupError`` if a family stays mid-rotation."""
    problems: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        index = ObjectIndex()
        for kind in ("Namespace", "ManagedSecret", "Secret"):
            list_cluster(client, namespaces=namespaces, kinds=(kind,), index=index)
            progress(f"listed {len(index.of_kind(kind))} {kind} object(s)")
            if kind == "Namespace":
                _require(namespaces, {ns.name for ns in index.of_kind("Namespace")})
        selection = select(list(index), selector=selector, namespaces=namespaces)
        problems = inconsistencies(selection.entries)
        if not problems:
            return selection
        if attempt < ATTEMPTS:
            progress(f"{problems[0]}; reading again in {PAUSE:.0f}s")
            time.sleep(PAUSE)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise BackupError(f"{problems[0]}{more}: retry when the rotation has finished")


def _require(asked: Sequence[str], found: set[str]) -> None:
    """Refuse a backup of a namespace that does not exist (a typo would back up nothing)."""
    missing = sorted(set(asked) - found)
    if missing:
        raise KubeNotFoundError(
            f"namespace {missing[0]} not found"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; nothing written"
        )


@dataclass(frozen=True, slots=True)
class Written:
    """What ``kustos backup create`` wrote."""

    path: Path
    size: int
    manifest: fmt.Manifest


def create(
    client: Client,
    output: Path,
    *,
    server: str,
    namespaces: Sequence[str] = (),
    selector: Selector,
    recipients: list[Recipient] | None = None,
    passphrase: Sensitive | None = None,
    now: dt.datetime,
    progress: Progress,
) -> Written:
    """Take a backup of the cluster into *output* (encrypted, owner-only, atomic)."""
    selection = collect(client, namespaces=namespaces, selector=selector, progress=progress)
    plaintext, manifest = fmt.pack(
        selection.entries,
        created=now,
        kustos_version=__version__,
        cluster=fmt.Cluster(server=server, id=cluster_id(client)),
        selection=fmt.Selection(namespaces=sorted(namespaces), selector=selector.text),
        excluded=selection.excluded,
    )
    progress(f"packed {len(manifest.objects)} object(s) ({len(plaintext)} bytes); encrypting")
    size = write_backup(output, plaintext, recipients=recipients, passphrase=passphrase)
    return Written(output, size, manifest)
