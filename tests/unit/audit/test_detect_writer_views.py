"""The detectors fed the views the archive's reader made, against the stored texts read again.

With the native core, file ingest reads each event once: the archive's reader keeps what
the detectors use as spans of the stored text (``Commit.viewed`` counts them), and the
detector thread runs on those (:meth:`~kustos.audit.watching.DetectorHook.handle_commit`)
instead of reading the stored texts again. Covered, on the benchmark's events, on every
audit log of the shared corpus and on varied traffic with oddities (escaped strings and
keys, fields of unexpected types, repeated fields, bodies, a canary value):

- the alert file and the baseline are byte for byte those of the same batches given as
  JSON arrays of their stored texts (the core reads each text itself) and those of the
  Python reference fed the archive's own views;
- every plain event is viewed by the reader (the benchmark's events all are, from a log
  file and from a webhook ``EventList``); an event with an escaped string is not, and the
  detectors read its text, with the same answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from bench.audit import make_event

from kustos.audit import native
from kustos.audit.archive import Archive, StoredEvents
from kustos.audit.detecting import DetectorsConfig
from kustos.audit.ingesting import ingest
from kustos.audit.records import ArchivedEvent, text_view
from kustos.audit.watching import DetectorHook
from tests.unit.audit.test_detect_native_equality import CONFIGS, _files, _rng, _texts
from tests.unit.audit.test_records import CANARY

pytestmark = pytest.mark.skipif(not native.enabled(), reason="the native core is not built")


def _stored(tmp_path: Path, lines: Sequence[bytes], batch_lines: int) -> list[StoredEvents]:
    """The batches a real archive stores when it ingests *lines* from a log file."""
    log = tmp_path / "audit.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    handed: list[Sequence[ArchivedEvent]] = []
    with Archive(tmp_path / "archive", hooks=[handed.append]) as store:
        ingest(store, [log], batch_lines=batch_lines)
    batches = [b for b in handed if isinstance(b, StoredEvents)]
    assert batches, "the log held events"
    assert len(batches) == len(handed), "the native core stored them"
    return batches


def _three_ways(tmp_path: Path, batches: Sequence[StoredEvents], config: DetectorsConfig) -> bytes:
    """The alerts of the writer's views, checked against the texts and the reference."""
    folders = {way: tmp_path / way for way in ("views", "texts", "reference")}
    hooks = {way: DetectorHook(folder, config) for way, folder in folders.items()}
    for batch in batches:
        first = batch[0].seq
        hooks["views"].handle_commit(first, batch.commit)
        hooks["texts"].handle_texts(first, batch.json_array())
        hooks["reference"]([ArchivedEvent(e.seq, view=text_view(e.data)) for e in batch])
    for hook in hooks.values():
        hook.close()
    alerts, baseline = _files(folders["views"])
    assert (alerts, baseline) == _files(folders["texts"])
    assert (alerts, baseline) == _files(folders["reference"])
    return alerts


@pytest.mark.parametrize("name", ["defaults", "classes"])
def test_bench_events_are_all_viewed_by_the_writer(tmp_path: Path, name: str) -> None:
    rng = random.Random(7)  # noqa: S311 - the bench's own synthetic events
    lines = [orjson.dumps(make_event(n, rng)) for n in range(3000)]  # as the bench writes
    batches = _stored(tmp_path, lines, 700)
    assert sum(b.commit.viewed for b in batches) == 3000
    config = DetectorsConfig.model_validate(CONFIGS[name])
    alerts = _three_ways(tmp_path, batches, config)
    assert alerts.count(b"\n") > 100, "the benchmark's traffic raises alerts"


def test_varied_traffic(tmp_path: Path) -> None:
    texts = _texts(_rng(11), 2500)
    batches = _stored(tmp_path, texts, 97)
    stored = sum(len(b) for b in batches)
    viewed = sum(b.commit.viewed for b in batches)
    # Escaped strings (names with quotes, tabs, new lines) are read by the detectors.
    assert 0.5 * stored < viewed < stored
    for name in ("tuned", "classes"):
        config = DetectorsConfig.model_validate(CONFIGS[name])
        alerts = _three_ways(tmp_path / name, batches, config)
        assert alerts.count(b"\n") > 20
        assert CANARY.encode() not in alerts


def test_corpus_audit_logs(tmp_path: Path, corpus_dir: Path) -> None:
    lines = []
    for path in sorted((corpus_dir / "audit").rglob("*")):
        if path.suffix in {".log", ".json"} and path.is_file():
            lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    batches = _stored(tmp_path, lines, 200)
    stored = sum(len(b) for b in batches)
    assert stored > 700
    assert sum(b.commit.viewed for b in batches) > stored // 2
    config = DetectorsConfig.model_validate(CONFIGS["classes"])
    assert _three_ways(tmp_path, batches, config).count(b"\n") >= 5  # the planted ones


def test_webhook_bodies_are_viewed_too(tmp_path: Path) -> None:
    rng = random.Random(8)  # noqa: S311 - the bench's own synthetic events
    handed: list[Sequence[ArchivedEvent]] = []
    with Archive(tmp_path / "archive", hooks=[handed.append]) as store:
        for part in range(3):
            items = [make_event(500 * part + n, rng) for n in range(500)]
            body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
            batch = native.core.read_event_list(orjson.dumps(body))  # compact, as API servers send
            assert batch is not None
            store.settle(batch)
            store.append_batches([batch])
    batches = [b for b in handed if isinstance(b, StoredEvents)]
    assert [b.commit.viewed for b in batches] == [500, 500, 500]
    config = DetectorsConfig.model_validate(CONFIGS["classes"])
    assert _three_ways(tmp_path, batches, config).count(b"\n") > 10
