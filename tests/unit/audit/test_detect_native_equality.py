"""The native detectors against the Python reference: the same alerts, the same baselines.

Varied traffic (every detector firing and not, learning periods, cooldowns, ignore globs
plain and with ``[classes]``, off-hours in zones with DST and across midnight, windows at
their exact edges, impersonation, anonymous and health requests, bodies and stripping
marks, every stage, repeated audit IDs, times in every form the core reads and forms it
leaves to the reference, fields of unexpected types, escaped keys) goes once through
:class:`~kustos.audit.watching.DetectorHook` fed event views (the reference) and once fed
the batches' JSON arrays (the native core), under several configurations:

- the alert files and the saved baselines are identical, byte for byte, also after
  restarts mid-stream (baseline reloaded), a batch delivered twice, a catch-up through
  the Python path and batches of views mixed in (the state moves between the two sides);
- a baseline written by the reference and reloaded gives the same result on both sides
  (the bulk-read windows keep their recency order through a restart);
- with ``KUSTOS_AUDIT_NATIVE=0`` the texts are decoded and run by the reference;
- the detector thread in the writer's process (the core without the GIL, fed by a real
  archive's file ingest) stores the alerts and baseline of the reference run in line;
- the baseline file the core writes itself is the bytes pydantic writes of the same
  state, and a time it could format differently is left to pydantic;
- no value reaches an alert or a baseline, and the core's errors name positions only.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kustos.audit import native
from kustos.audit.archive import Archive
from kustos.audit.detecting import DETECTORS, DetectorsConfig
from kustos.audit.ingesting import ingest
from kustos.audit.records import ArchivedEvent, text_view
from kustos.audit.watching import (
    BASELINE_FILE,
    DetectorHook,
    DetectorThread,
    hooks_for,
    state_to_doc,
)
from kustos.files.state import encode
from tests.unit.audit.test_records import CANARY

pytestmark = pytest.mark.skipif(not native.enabled(), reason="the native core is not built")

T0 = dt.datetime(2026, 3, 27, 20, 0, tzinfo=dt.UTC)  # Berlin moves to summer time on the 29th
_HUMANS = ("alice", "bob", "caf\u00e9", 'quo"te\\', "tab\tname", "line\nbreak")
_SAS = (
    "system:serviceaccount:payments:app",
    "system:serviceaccount:payments:worker",
    "system:serviceaccount:kube-system:coredns",
    "system:serviceaccount:kustos-system:kustos-operator",
    "system:serviceaccount:",
)
#: A workload whose token is bound to pod ``payments/app-1``.
_APP = {
    "username": "system:serviceaccount:payments:app",
    "groups": ["system:serviceaccounts"],
    "extra": {"authentication.kubernetes.io/pod-name": ["app-1"]},
}
_PLATFORM = ("system:node:n1", "system:kube-controller-manager", "system:apiserver")
_ANONYMOUS = ("system:anonymous",)
_NAMESPACES = ("payments", "billing", "ops", "kube-system", "", "\u00fcber")
_NAMES = ("db-creds", "api-key", "tls", "caf\u00e9", 'q"x', "", None)

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tuned": {
        "learning_period": "30m",
        "cooldown": "2m",
        "ignore_users": ["system:node:*", "bo?", "system:serviceaccount:kube-system:*"],
        "first_secret_read": {"ignore_users": ["*worker"]},
        "new_source_ip": {"include_service_accounts": True, "severity": "high"},
        "off_hours": {
            "enabled": True,
            "timezone": "Europe/Berlin",
            "hours": "22:00-06:00",
            "days": ["mon", "tue", "wed", "thu", "fri", "sun"],
            "include_service_accounts": True,
        },
        "bulk_read": {"window": "90s", "distinct_secrets": 3, "namespaces": 2},
        "denied_burst": {"window": "30s", "threshold": 3},
        "exec_then_secret": {"window": "2m"},
        "secret_changed": {"allow_users": ["system:serviceaccount:payments:w*"]},
    },
    "classes": {
        "learning_period": "0s",
        "cooldown": "0s",
        "ignore_users": ["system:[kn]*:*", "*\n*"],
        "anonymous": {"ignore_users": ["system:anon[a-z]mous"]},
        "off_hours": {"enabled": True, "timezone": "America/New_York", "hours": "09:00-17:00"},
        "bulk_read": {"cluster_wide": False, "distinct_secrets": 2, "window": "10s"},
        "denied_burst": {"threshold": 2, "window": "5s"},
        "new_source_ip": {"enabled": False},
    },
    "few": {
        "learning_period": "10m",
        "first_secret_read": {"enabled": False},
        "bulk_read": {"enabled": False},
        "secret_changed": {"enabled": False, "operator": "alice"},
        "policy_leak": {"enabled": False},
        "exec_then_secret": {"enabled": False},
    },
}


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - test data, not security


def _stamp(when: dt.datetime, rng: random.Random) -> str:
    """*when* in one of the forms an audit event may carry (some left to the reference)."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    roll = rng.random()
    if roll < 0.8:
        return f"{text}.{when.microsecond:06d}Z"
    if roll < 0.86:
        return f"{text}.{when.microsecond // 1000:03d}Z"
    if roll < 0.9:
        return f"{text}+00:00"
    if roll < 0.93:
        return text
    if roll < 0.96:  # another offset: the reference reads it
        return (when + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+02:00"
    return f"{text}.{when.microsecond:06d}000Z"[:-4] + "Z"  # five digits: the reference


def _event(n: int, when: dt.datetime, rng: random.Random) -> dict[str, Any]:
    kind = rng.random()
    if kind < 0.35:
        user = rng.choice(_HUMANS)
    elif kind < 0.7:
        user = rng.choice(_SAS)
    elif kind < 0.9:
        user = rng.choice(_PLATFORM)
    else:
        user = rng.choice(_ANONYMOUS)
    resource = rng.choice(("secrets", "secrets", "secrets", "pods", "configmaps", ""))
    verb = rng.choice(("get", "get", "list", "watch", "create", "update", "delete", "patch"))
    ref: dict[str, Any] = {"resource": resource}
    namespace = rng.choice(_NAMESPACES)
    if namespace:
        ref["namespace"] = namespace
    name = rng.choice(_NAMES)
    if (name is not None and verb not in ("list", "watch")) or rng.random() < 0.1:
        ref["name"] = name or "x"
    if resource == "pods" and rng.random() < 0.4:
        ref["subresource"] = rng.choice(("exec", "attach", "log"))
    if rng.random() < 0.05:
        ref["apiGroup"] = "apps"
    audit_id = f"id-{n}" if rng.random() > 0.05 else f"id-{n - 1}"
    doc: dict[str, Any] = {
        "kind": "Event",
        "auditID": audit_id,
        "stage": rng.choice(
            ("ResponseComplete", "ResponseComplete", "ResponseStarted", "Panic", "RequestReceived")
        ),
        "verb": verb,
        "requestURI": rng.choice(
            ("/api/v1/secrets", "/healthz", "/livez?verbose", "/version/", "/readyzz", "/x")
        ),
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [f"10.0.0.{rng.randrange(6)}"],
        "objectRef": ref,
        "responseStatus": {"code": rng.choice((200, 200, 200, 201, 401, 403, 403, 404))},
        "requestReceivedTimestamp": _stamp(when, rng),
        "annotations": {"authorization.k8s.io/reason": 'RBAC: "x"'},
    }
    roll = rng.random()
    if user.startswith("system:serviceaccount:") and roll < 0.5:
        doc["user"]["extra"] = {"authentication.kubernetes.io/pod-name": ["app-1", "x"]}
    if user in _ANONYMOUS:
        doc["user"]["groups"] = ["system:unauthenticated"]
    if roll < 0.03:
        doc["impersonatedUser"] = {"username": rng.choice(_HUMANS), "groups": []}
    elif roll < 0.04:
        doc["impersonatedUser"] = {"username": "", "groups": []}
    elif roll < 0.05:
        doc["impersonatedUser"] = None
    if rng.random() < 0.04:
        doc["requestObject"] = rng.choice(({"kind": "Pod", "spec": {}}, None))
    if rng.random() < 0.03:
        doc["annotations"]["kustos.io/values-stripped"] = "responseObject"
    if rng.random() < 0.03:
        doc["annotations"]["kustos.io/values-stripped"] = None
    if rng.random() < 0.04:
        doc["sourceIPs"] = rng.choice(([], [""], ["10.9.9.9", "192.0.2.7"]))
    if rng.random() < 0.03:
        doc["responseStatus"] = rng.choice((None, {}, {"code": None}, {"metadata": {}}))
    if rng.random() < 0.04:  # the time elsewhere, or nowhere
        del doc["requestReceivedTimestamp"]
        field = rng.choice(("stageTimestamp", "timestamp", "metadata", "none"))
        if field == "metadata":
            doc["metadata"] = {"creationTimestamp": _stamp(when, rng)}
        elif field != "none":
            doc[field] = _stamp(when, rng)
    if rng.random() < 0.02:
        doc["requestReceivedTimestamp"] = "2026-02-30T00:00:00.000000Z"  # no such day
        doc["stageTimestamp"] = _stamp(when, rng)
    return doc


def _texts(rng: random.Random, count: int) -> list[bytes]:
    """*count* stored event texts, oddities included, over two and a half days."""
    texts: list[bytes] = []
    when = T0
    for n in range(count):
        # Mostly small steps, sometimes exactly a window apart, sometimes hours.
        when += rng.choice(
            (
                dt.timedelta(microseconds=rng.randrange(1, 3_000_000)),
                dt.timedelta(seconds=rng.choice((5, 10, 30, 60, 90, 120))),
                dt.timedelta(0),
                dt.timedelta(hours=rng.choice((1, 3, 7))),
            )
        )
        doc = _event(n, when, rng)
        if texts and rng.random() < 0.3 and b'"subresource":"exec"' in texts[-1]:
            # A Secret read after the exec: by the same principal, or from inside the pod.
            last = orjson.loads(texts[-1])
            doc["user"] = rng.choice((last["user"], _APP))
            doc["objectRef"] = {"resource": "secrets", "namespace": "payments", "name": "db"}
            doc.update(verb="get", stage="ResponseComplete", responseStatus={"code": 200})
        elif rng.random() < 0.02:
            doc["objectRef"] = {"resource": "pods", "namespace": "payments", "name": "app-1"}
            doc["objectRef"]["subresource"] = "exec"
            doc.update(stage="ResponseComplete", responseStatus={"code": 101})
        text = orjson.dumps(doc)
        roll = rng.random()
        if roll < 0.01:
            text = text.replace(b'"verb"', b'"\\u0076erb"')  # an escaped key
        elif roll < 0.02:
            text = text.replace(b'"code":', b'"code":1.0,"x":', 1)  # a float code
        elif roll < 0.03:
            text = text.replace(b'"stage"', b'"stage":"ResponseComplete","stage"', 1)
        elif roll < 0.04:
            text = text.replace(b'{"kind"', b'{"big":"' + b"y" * 5000 + b'","kind"', 1)
        elif roll < 0.05:
            text = text.replace(b'{"kind"', b'{"secret":"' + CANARY.encode() + b'","kind"', 1)
        elif roll < 0.055:
            text = text.replace(b'"groups":[', b'"groups":[5,', 1)  # wrong type
        texts.append(text)
    return texts


def _batches(texts: Sequence[bytes], rng: random.Random) -> Iterator[tuple[int, list[bytes]]]:
    seq = 1
    at = 0
    while at < len(texts):
        size = rng.choice((1, 7, 50, 200))
        part = list(texts[at : at + size])
        yield seq, part
        seq += len(part)
        at += len(part)


def _python(hook: DetectorHook, first: int, part: Sequence[bytes]) -> None:
    hook([ArchivedEvent(first + i, view=text_view(t)) for i, t in enumerate(part)])


def _native(hook: DetectorHook, first: int, part: Sequence[bytes]) -> None:
    hook.handle_texts(first, b"header[" + b",".join(part) + b"]", 6)


def _files(folder: Path) -> tuple[bytes, bytes]:
    watch = folder / "watch"
    alerts = watch / "alerts.jsonl"
    return (alerts.read_bytes() if alerts.exists() else b"", (watch / "baseline.json").read_bytes())


class _Stored:
    """An archive's ``read`` over the texts (for ``catch_up``)."""

    def __init__(self, texts: Sequence[bytes]) -> None:
        self.texts = texts

    def read(self, after_seq: int = 0) -> Iterator[ArchivedEvent]:
        for n, text in enumerate(self.texts, start=1):
            if n > after_seq:
                yield ArchivedEvent(n, view=text_view(text))


def _run(tmp_path: Path, name: str, config: DetectorsConfig, seed: int) -> None:
    rng = _rng(seed)
    texts = _texts(rng, 2500)
    batches = list(_batches(texts, rng))
    reference, fast = tmp_path / f"{name}-py", tmp_path / f"{name}-native"
    ref_hook, fast_hook = DetectorHook(reference, config), DetectorHook(fast, config)
    plan = _rng(seed + 1)
    for number, (first, part) in enumerate(batches):
        _python(ref_hook, first, part)
        roll = plan.random()
        if roll < 0.05:
            _python(fast_hook, first, part)  # a batch of views: the state moves over
        else:
            _native(fast_hook, first, part)
        if roll > 0.95:
            _native(fast_hook, first, part)  # delivered twice: nothing happens twice
        if number % 37 == 36:  # a restart: both save and reload their baselines
            ref_hook.close()
            fast_hook.close()
            assert _files(fast) == _files(reference), f"{name}: after batch {number}"
            ref_hook, fast_hook = DetectorHook(reference, config), DetectorHook(fast, config)
        if number % 53 == 52:  # the native side was down: it catches up from the archive
            seen = sum(len(p) for _, p in batches[: number + 1])
            nxt = batches[number + 1 : number + 3]
            for first_n, part_n in nxt:
                _python(ref_hook, first_n, part_n)
            fast_hook.close()
            fast_hook = DetectorHook(fast, config)
            upto = seen + sum(len(p) for _, p in nxt)
            fast_hook.catch_up(_Stored(texts[:upto]))
            ref_hook.save()
            assert _files(fast) == _files(reference), f"{name}: after the catch-up"
            batches[number + 1 : number + 3] = []
    ref_hook.close()
    fast_hook.close()
    alerts, baseline = _files(fast)
    assert (alerts, baseline) == _files(reference), name
    assert alerts.count(b"\n") > 20, "the traffic raised alerts"
    assert CANARY.encode() not in alerts + baseline


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_alerts_and_baselines(tmp_path: Path, name: str) -> None:
    config = DetectorsConfig.model_validate(CONFIGS[name])
    for seed in (1, 2):
        _run(tmp_path / str(seed), name, config, seed)


def test_every_detector_fires(tmp_path: Path) -> None:
    """The traffic of the tests above reaches each detector (on the native side)."""
    fired: set[str] = set()
    for name in ("tuned", "classes", "defaults"):
        folder = tmp_path / name
        hook = DetectorHook(folder, DetectorsConfig.model_validate(CONFIGS[name]))
        rng = _rng(3)
        texts = _texts(rng, 2500)
        for first, part in _batches(texts, rng):
            _native(hook, first, part)
        hook.close()
        for line in _files(folder)[0].splitlines():
            fired.add(orjson.loads(line)["detector"])
    assert fired == set(DETECTORS)


def test_texts_without_the_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``KUSTOS_AUDIT_NATIVE=0``: the texts are read and run by the reference."""
    rng = _rng(4)
    texts = _texts(rng, 800)
    config = DetectorsConfig.model_validate(CONFIGS["tuned"])
    monkeypatch.setenv(native.ENV, "0")
    off, reference = DetectorHook(tmp_path / "off", config), DetectorHook(tmp_path / "py", config)
    for first, part in _batches(texts, rng):
        _native(off, first, part)
        _python(reference, first, part)
    assert off._core is None  # the core was never made
    off.close()
    reference.close()
    assert _files(tmp_path / "off") == _files(tmp_path / "py")


def test_core_errors_name_positions_only(tmp_path: Path) -> None:
    hook = DetectorHook(tmp_path, DetectorsConfig())
    bad = b'[{"auditID":"a","stage":"ResponseComplete","x":"' + CANARY.encode() + b'"} junk'
    with pytest.raises(ValueError, match="at byte") as caught:
        hook.handle_texts(1, bad)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("name", ["tuned", "classes"])
def test_the_detector_thread_matches_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """File ingest with the detectors on a thread of the writer's process (the default with
    the native core) against the reference run in line on the Python path: the same alert
    file and baseline, byte for byte, across a reopened archive (catch-up at start)."""
    rng = _rng(5)
    texts = _texts(rng, 2000)
    config = tmp_path / "watch.yaml"
    config.write_text(yaml.safe_dump({"detectors": CONFIGS[name]}))
    logs = []
    for part, chunk in enumerate((texts[:1100], texts[1100:])):
        log = tmp_path / f"audit-{part}.log"
        log.write_bytes(b"\n".join(chunk) + b"\n")
        logs.append(log)
    for folder, on in (("thread", True), ("reference", False)):
        monkeypatch.setenv(native.ENV, "1" if on else "0")
        for log in logs:  # reopened per log: the hook catches up, then runs
            hooks = hooks_for(tmp_path / folder, config, in_process=not on)
            assert isinstance(hooks[0], DetectorThread) is on
            with Archive(tmp_path / folder, hooks=hooks) as store:
                ingest(store, [log], batch_lines=rng.choice((61, 97, 500)))
    alerts, baseline = _files(tmp_path / "thread")
    assert (alerts, baseline) == _files(tmp_path / "reference")
    assert alerts.count(b"\n") > 20, "the traffic raised alerts"
    assert orjson.loads(baseline)["last_seq"] > 1900
    assert CANARY.encode() not in alerts + baseline


@pytest.mark.parametrize("cooldown", [1_793_491_200.5, 1e16, 2.5e-5])
def test_baseline_written_by_the_core(tmp_path: Path, cooldown: float) -> None:
    """The core writes the baseline's bytes (no Python object per entry); they are those
    pydantic writes of the same state, also when a time is one whose digits the core leaves
    to pydantic (``1e16``, ``2.5e-05``: repr and Rust could differ there)."""
    watch = tmp_path / "watch"
    watch.mkdir()
    planted = {"last_seq": 0, "cooldowns": {"denied_burst\u0000x\u0000": cooldown}}
    (watch / BASELINE_FILE).write_bytes(orjson.dumps(planted))
    hook = DetectorHook(tmp_path, DetectorsConfig.model_validate(CONFIGS["tuned"]))
    texts = _texts(_rng(3), 600)
    hook.handle_texts(1, b"[" + b",".join(texts) + b"]")
    hook.save()
    written = (watch / BASELINE_FILE).read_bytes()
    assert written == encode(state_to_doc(hook.state))
    assert orjson.loads(written)["last_seq"] == 600
    assert orjson.loads(written)["cooldowns"]["denied_burst\u0000x\u0000"] == cooldown
