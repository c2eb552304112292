"""The native writer core against the Python reference: byte for byte the same archive.

Varied audit logs (every stage, missing and mistyped fields, unicode and escapes, huge and
tiny events, Secret bodies to strip, repeats within and across batches, lines that are no
Event, JSON the fast reader is unsure about) are ingested once on each path:

- segments (names and bytes), index rows and its last record, ingest reports, cursor and
  the checkpoints' sizes and heads are identical, and so are the detectors' alerts;
- ``EventList`` bodies (good ones, pretty-printed items, bad bodies, bad items) give the
  same batches stored, or the same refusal, on both paths;
- the dedupe window forgets in the same order on both paths (a small window);
- batches cut from many small reads of the file (lines longer than a read, a batch
  spanning reads) are the same batches;
- with the native core, no Secret value reaches the archive (canary);
- without it (not built, or turned off) the archive takes the Python path.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kustos.audit import archive as archive_module
from kustos.audit import ingesting, native
from kustos.audit.archive import Archive, read_checkpoints
from kustos.audit.ingesting import IngestReport, ingest
from kustos.audit.receiving import BatchError, parse_batch, read_batch
from kustos.audit.watching import hooks_for
from tests.unit.audit.test_records import CANARY, event, leaking_event

pytestmark = pytest.mark.skipif(not native.enabled(), reason="the native core is not built")

_STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_NAMES = ("db-creds", "caf\u00e9", "\u65e5\u672c", "tab\tin-name", 'quote"d', "back\\slash", "")
_USERS = ("alice", "system:serviceaccount:ns:sa", "system:node:n1", "\u00e9ve", "system:anonymous")
#: Lines the fast reader must leave to the reference (or that are no Event at all).
_ODD = (
    b"",
    b"   ",
    b"not json",
    b"[1, 2]",
    b'{"kind":"Event"}',
    b'{"auditID":5,"stage":"ResponseComplete"}',
    b'{"auditID":"odd-1","stage":"ResponseComplete","user":[]}',
    b'{"auditID":"odd-2","stage":"ResponseComplete","user":{"groups":null}}',
    b'{"auditID":"odd-3","stage":"ResponseComplete","responseStatus":{"code":2.5}}',
    b'{"auditID":"odd-4","stage":"ResponseComplete","responseStatus":{"code":"200"}}',
    b'{"auditID":"odd-5","stage":"A","auditID":"odd-5b"}',
    b'{"auditID":"odd-6","stage":"ResponseComplete","x":"\\ud800"}',
    b'{"auditID":"odd-7","stage":"ResponseComplete","x":"a\tb"}',
    b'{"auditID":"odd-8","stage":"ResponseComplete","x":' + b"[" * 80 + b"]" * 80 + b"}",
    b'{"auditID":"odd-9","stage":"ResponseComplete","kind":"Other"}',
    b'{"auditID":"odd-10","stage":"ResponseComplete","x":"\xff\xfe"}',
    b'  {"auditID":"odd-11","stage":"ResponseComplete"}  \r',
    b'{"auditID":"odd-12","stage":"ResponseComplete","x":1e999,"y":-0,"z":1.5E+3}',
    b'{"auditID":"odd-13","stage":"ResponseComplete","x":01}',
    b'{"auditID":"odd-14","stage":"ResponseComplete","responseStatus":{"code":99999999999999999999}}',
    b'{"auditID":"odd-15","stage":"ResponseComplete","sourceIPs":null}',
    b'{"auditID":"odd-16","stage":"ResponseComplete","user":{"username":null,"extra":null}}',
    b'{"auditID":"odd-17","stage":"ResponseComplete","objectRef":null,"annotations":null}',
    b'{"auditI\\u0044":"odd-18","stage":"\\u00e9\\n","objectRef":{"name":"\\"x\\""}}',
    b'{"auditID":"","stage":"ResponseComplete","objectRef":{"resource":"secrets"}}',
    b'{"auditID":"odd-19","stage":"ResponseComplete","requestObject":null}',
    b'{"auditID":"odd-20","stage":"ResponseComplete","x":[1,2,{"a":[true,false,null]}]}',
    b'{"auditID":"odd-21","stage":"ResponseComplete",}',
    b'{"auditID":"odd-22","stage":"ResponseComplete","timestamp":"2026-11-01T00:00:00Z"}',
    b'{"auditID":"odd-23","stage":"S","metadata":{"creationTimestamp":5}}',
    b'{"auditID":"odd-24","stage":"S","annotations":{"kustos.io/values-stripped":"requestObject"}}',
    # Bodies: kept as they came only when orjson would write them back the same.
    b'{"auditID":"body-1","stage":"S","requestObject":{"kind":"Pod","a":[1,-2,true,null,"x"]}}',
    b'{"auditID":"body-2","stage":"S","requestObject": {"kind":"Pod"}}',
    b'{"auditID":"body-3","stage":"S","requestObject":{"kind":"Pod","f":1.5}}',
    b'{"auditID":"body-4","stage":"S","requestObject":{"kind":"Pod","s":"\\u00e9\\/"}}',
    b'{"auditID":"body-5","stage":"S","requestObject":{"kind":"Pod","k":1,"k":2}}',
    b'{"auditID":"body-6","stage":"S","requestObject":{"kind":"Pod","n":-0}}',
    b'{"auditID":"body-7","stage":"S","requestObject":{"kind":"Pod","n":123456789012345678901}}',
    b'{"auditID":"body-8","stage":"S","requestObject":{"kind":"Pod","s":"\xe2\x80\xa8\\n\\t"}}',
    b'{"auditID":"body-9","stage":"S","objectRef":{"resource":"secrets"},"requestObject":{"kind":"Pod"}}',
    b'{"auditID":"body-10","stage":"S","objectRef":{"resource":"secrets","apiGroup":"x.io"},"responseObject":{"kind":"Pod","p":"a CRD, not a Secret"}}',
    b'{"auditID":"body-11","stage":"S","objectRef":{"resource":"serviceaccounts","subresource":"token"},"responseObject":{"kind":"Pod","t":"'
    + CANARY.encode()
    + b'"}}',
    b'{"auditID":"body-12","stage":"S","objectRef":{"resource":"pods"},"responseObject":{"kind":"TokenRequest","t":"'
    + CANARY.encode()
    + b'"}}',
    b'{"auditID":"body-13","stage":"S","requestObject":null,"responseObject":{"kind":5}}',
    b'{"auditID":"body-14","stage":"S","requestObject":"text"}',
    b'{"auditID":"body-15","stage":"S","requestObject":{"kind":"Pod","x":"\xff"}}',
    b'{"auditID":"body-16","stage":"S","responseObject":{"kind":"Pod","n":007}}',
)


def _varied(n: int, rng: random.Random) -> dict[str, Any]:
    """Event *n*: a random shape (sometimes a body, sometimes fields missing)."""
    pick = rng.random()
    if pick < 0.04:
        doc = leaking_event(n)
    else:
        doc = event(
            n,
            user=rng.choice(_USERS),
            verb=rng.choice(("get", "list", "watch", "create", "update", "delete")),
            resource=rng.choice(("secrets", "configmaps", "pods", "")),
            namespace=rng.choice(("payments", "", "kube-system", "\u00fc")),
            name=rng.choice((*_NAMES, None)),
            stage=rng.choice(_STAGES),
            time=f"2026-11-{1 + n % 3:02d}T{n % 24:02d}:00:{n % 60:02d}.{n:06d}Z",
            code=rng.choice((200, 200, 201, 401, 403, 404)),
        )
    if pick > 0.96:
        doc["requestObject"] = {"kind": "Pod", "spec": {"containers": [{"name": "c"}]}}
    if pick > 0.98:
        doc["responseObject"] = {"kind": "ConfigMap", "data": {"k": CANARY}}
    for field in ("objectRef", "user", "requestReceivedTimestamp", "sourceIPs", "annotations"):
        if rng.random() < 0.05:
            del doc[field]
    if rng.random() < 0.03:
        doc["annotations"] = {"big": "x" * rng.choice((1, 300_000))}
    if rng.random() < 0.05:
        doc["user"] = {
            "username": "system:serviceaccount:payments:app",
            "groups": ["system:serviceaccounts"],
            "extra": {"authentication.kubernetes.io/pod-name": ["app-1"], "other": [1, {}]},
        }
    if rng.random() < 0.03:
        doc["impersonatedUser"] = {"username": "mallory", "groups": []}
    return doc


def _log(rng: random.Random, count: int) -> bytes:
    lines = []
    earlier: list[bytes] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.08:
            lines.append(rng.choice(_ODD))
        elif roll < 0.13 and earlier:
            lines.append(rng.choice(earlier))  # a repeat, in this batch or an earlier one
        else:
            line = orjson.dumps(_varied(n, rng))
            earlier.append(line)
            lines.append(line)
    lines.append(b'{"kind":"Event","auditID":"tiny","stage":"x"}')
    return b"\n".join(lines) + b"\n"


def _index_rows(directory: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    db = sqlite3.connect(directory / "index.sqlite")
    try:
        postings = db.execute("SELECT * FROM postings ORDER BY bucket, block").fetchall()
        meta = db.execute("SELECT * FROM meta ORDER BY key").fetchall()
    finally:
        db.close()
    return postings, meta


def _segments(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((directory / "segments").iterdir())}


def _alerts(directory: Path) -> list[Any]:
    path = directory / "watch" / "alerts.jsonl"
    if not path.exists():
        candidates = list(directory.rglob("alerts.jsonl"))
        path = candidates[0] if candidates else path
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def _ingest(
    monkeypatch: pytest.MonkeyPatch,
    directory: Path,
    logs: list[Path],
    *,
    on: bool,
    in_process: bool = True,
) -> list[IngestReport]:
    monkeypatch.setenv(native.ENV, "1" if on else "0")
    reports = []
    for log in logs:  # one run per log: the archive is reopened (tail recovery, window)
        hooks = hooks_for(directory, None, in_process=in_process)
        with Archive(directory, segment_bytes=150_000, hooks=hooks) as store:
            assert store.native is on
            reports.append(ingest(store, [log], batch_lines=97))
    return reports


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_file_ingest_is_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    logs = []
    for part in range(2):
        log = tmp_path / f"audit-{part}.log"
        log.write_bytes(_log(rng, 700))
        logs.append(log)
    monkeypatch.setattr(archive_module, "DEDUPE_WINDOW", 150)  # forgets within the run
    python = _ingest(monkeypatch, tmp_path / "python", logs, on=False)
    fast = _ingest(monkeypatch, tmp_path / "native", logs, on=True)
    assert fast == python
    assert sum(r.stripped for r in fast) > 0
    assert sum(r.skipped for r in fast) > 0
    assert sum(r.repeated for r in fast) > 0
    assert _segments(tmp_path / "native") == _segments(tmp_path / "python")
    assert len(_segments(tmp_path / "native")) > 1
    assert _index_rows(tmp_path / "native") == _index_rows(tmp_path / "python")
    cursor = "ingest-cursor.json"
    assert (tmp_path / "native" / cursor).read_bytes() == (
        tmp_path / "python" / cursor
    ).read_bytes()
    heads = [
        [(c.size, c.head) for c in read_checkpoints(tmp_path / d)] for d in ("native", "python")
    ]
    assert heads[0] == heads[1]
    alerts = _alerts(tmp_path / "native")
    assert alerts == _alerts(tmp_path / "python")
    assert alerts  # the varied events do raise some
    for path in (tmp_path / "native").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_detector_process_gets_the_same_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(4)  # noqa: S311 - test data, not security
    log = tmp_path / "audit.log"
    log.write_bytes(_log(rng, 500))
    # The reference runs the detectors in process (its MessagePack views cannot carry a
    # status code past 64 bits, which one odd line has).
    python = _ingest(monkeypatch, tmp_path / "python", [log], on=False, in_process=True)
    fast = _ingest(monkeypatch, tmp_path / "native", [log], on=True, in_process=False)
    assert fast == python
    alerts = _alerts(tmp_path / "native")
    assert alerts == _alerts(tmp_path / "python")
    assert alerts


def test_batches_cut_from_small_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The native reader reads about what a batch still misses; tiny reads cut the same
    batches (each line counted once, a line longer than a read, batches across reads)."""
    rng = random.Random(4)  # noqa: S311 - test data, not security
    log = tmp_path / "audit.log"
    log.write_bytes(_log(rng, 900))
    python = _ingest(monkeypatch, tmp_path / "python", [log], on=False)
    monkeypatch.setattr(ingesting, "_READ_BYTES", 1000)
    monkeypatch.setattr(ingesting, "_READ_MAX", 7000)
    fast = _ingest(monkeypatch, tmp_path / "native", [log], on=True)
    assert fast == python
    assert _segments(tmp_path / "native") == _segments(tmp_path / "python")
    assert (tmp_path / "native" / "ingest-cursor.json").read_bytes() == (
        tmp_path / "python" / "ingest-cursor.json"
    ).read_bytes()


def _bodies(rng: random.Random) -> Iterator[bytes]:
    head = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
    for n in range(40):
        items = [orjson.dumps(_varied(1000 * n + i, rng)) for i in range(rng.randrange(0, 30))]
        if n % 7 == 3 and items:  # an item printed over several lines
            items[0] = orjson.dumps(orjson.loads(items[0]), option=orjson.OPT_INDENT_2)
        if n % 9 == 4:
            items.append(rng.choice(_ODD[3:]))  # usually no Event: the batch is refused
        yield head + b",".join(items) + b"]}"
    yield b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}'
    yield b'{"kind":"EventList","apiVersion":"v1","items":[]}'
    yield b'{"kind":"Other","apiVersion":"audit.k8s.io/v1","items":[]}'
    yield b'{"kind":"EventList","kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}'
    yield b"not json"
    yield head + b'{"auditID":"a","stage":"s"}'  # cut short


def _receive(
    monkeypatch: pytest.MonkeyPatch, directory: Path, bodies: list[bytes], *, on: bool
) -> list[object]:
    monkeypatch.setenv(native.ENV, "1" if on else "0")
    outcomes: list[object] = []
    with Archive(directory, segment_bytes=100_000) as store:
        for pair in range(0, len(bodies), 2):  # two batches per group commit, as served
            if on:
                batches = []
                for body in bodies[pair : pair + 2]:
                    try:
                        batches.append(read_batch(body, store))
                    except BatchError as exc:
                        outcomes.append(str(exc))
                outcomes.append((store.append_batches(batches), [b.events for b in batches]))
            else:
                groups = []
                for body in bodies[pair : pair + 2]:
                    try:
                        groups.append(parse_batch(body))
                    except BatchError as exc:
                        outcomes.append(str(exc))
                stored = store.append_groups(groups)
                outcomes.append(([len(s) for s in stored], [len(g) for g in groups]))
    return outcomes


def test_webhook_batches_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = list(_bodies(random.Random(5)))  # noqa: S311 - test data
    bodies += bodies[:6]  # a retried batch: its events are repeats
    python = _receive(monkeypatch, tmp_path / "python", bodies, on=False)
    fast = _receive(monkeypatch, tmp_path / "native", bodies, on=True)
    assert fast == python
    assert any(isinstance(o, str) for o in fast)  # some bodies were refused
    assert _segments(tmp_path / "native") == _segments(tmp_path / "python")
    assert _index_rows(tmp_path / "native") == _index_rows(tmp_path / "python")


def test_without_the_core_the_python_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "0")
    log = tmp_path / "audit.log"
    log.write_bytes(orjson.dumps(event(1)) + b"\n")
    with Archive(tmp_path / "archive") as store:
        assert not store.native
        assert ingest(store, [log]).stored == 1
