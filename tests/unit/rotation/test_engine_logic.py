"""The pure parts of the rotation engine: versions, due times, reloads, the CRD schema.

Aspects: a finished rotation marks the new version current and the old one previous,
keeps ``keep`` versions but never fewer than two, and names the ones to prune; a failed
version is marked with its reason; ``status.rotation`` round-trips; the content
fingerprint changes with any key or value and is not the value; the first rotation is due
at once, ``every``/``schedule``/``maxAge`` give the earliest time, a spec change is due at
once, a window moves the time to its opening, a certificate past its renewal point is due
(and ignores a window that would let it expire); reload decisions record a baseline
without restarting, restart only on a changed fingerprint, ignore absent Secrets and keep
the record of a deleted one; Reloader's annotations are read; every field of the pydantic
spec is in the CRD's OpenAPI schema and the other way round; the SCRAM verifier matches
RFC 7677's test vector shape.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kustos.crypto.certificates import CertFacts
from kustos.kube.documents import to_object
from kustos.kube.objects import Source
from kustos.rotation.planning import Reason, data_spec_hash, next_rotation
from kustos.rotation.postgres import scram_verifier
from kustos.rotation.reloading import ABSENT, decide, format_hashes, parse_hashes, watched_secrets
from kustos.rotation.spec import ManagedSecretSpec, parse_spec
from kustos.rotation.versions import (
    Outcome,
    RotationState,
    Step,
    VersionRecord,
    content_hash,
    finish,
    mark_failed,
    next_number,
    version_secret_name,
)
from kustos.sensitive import Sensitive

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
CRD = Path(__file__).resolve().parents[3] / "deploy" / "rotation" / "crd-managedsecret.yaml"


def _record(n: int, state: Outcome = Outcome.PREVIOUS) -> VersionRecord:
    return VersionRecord(n, f"2026-01-0{n}T00:00:00Z", f"h{n}", "Scheduled", state)


# --------------------------------------------------------------------------- versions
def test_finish_keeps_history_and_names_the_pruned() -> None:
    records = [_record(3, Outcome.CURRENT), _record(2), _record(1)]
    kept, pruned = finish(records, _record(4), keep=2)
    assert [(r.number, r.state) for r in kept] == [(4, Outcome.CURRENT), (3, Outcome.PREVIOUS)]
    assert pruned == [2, 1]
    kept, pruned = finish(records, _record(4), keep=1)
    assert len(kept) == 2, "the previous version is never pruned: rollbacks need it"
    kept, pruned = finish(records, _record(4), keep=10)
    assert pruned == []
    assert [r.number for r in kept] == [4, 3, 2, 1]


def test_mark_failed_and_next_number() -> None:
    marked = mark_failed([_record(2), _record(1, Outcome.CURRENT)], 2, "timeout")
    assert marked[0].state is Outcome.FAILED
    assert marked[0].reason.endswith("rolled back: timeout")
    assert marked[1].state is Outcome.CURRENT
    assert next_number([_record(2)], [5, 3]) == 6
    assert next_number([], []) == 1
    assert version_secret_name("db", 7) == "db-v7"


def test_rotation_state_round_trips_through_status() -> None:
    state = RotationState(4, 3, Step.ROLLING_OUT, "Scheduled", "2026-12-02T12:00:00Z")
    assert RotationState.from_status(state.to_status()) == state
    rollback = RotationState(
        5, 4, Step.PENDING, "Rollback to v2", "t", rollback=True, source_version=2
    )
    assert RotationState.from_status(rollback.to_status()) == rollback
    failing = state.at(Step.ROLLING_BACK, failure="Deployment x: not complete")
    assert RotationState.from_status(failing.to_status()) == failing
    assert RotationState.from_status(None) is None
    assert RotationState.from_status({}) is None
    assert VersionRecord.from_status(_record(1).to_status()) == _record(1)


def test_content_hash_tracks_every_key_and_value_and_hides_them() -> None:
    base = {"a": Sensitive(b"one"), "b": Sensitive(b"two")}
    h = content_hash(base)
    assert len(h) == 16
    assert content_hash({"b": Sensitive(b"two"), "a": Sensitive(b"one")}) == h
    assert content_hash({**base, "a": Sensitive(b"onf")}) != h
    assert content_hash({"a": Sensitive(b"one")}) != h
    assert content_hash({"ab": Sensitive(b""), "": Sensitive(b"")}) != content_hash(
        {"a": Sensitive(b"b")}
    )
    assert h != hashlib.sha256(b"one").hexdigest()[:16]


# --------------------------------------------------------------------------- planning
def _spec(**rotation: Any) -> ManagedSecretSpec:
    return parse_spec({"secretName": "db", "data": {"p": {"password": {}}}, "rotation": rotation})


def _next(spec: ManagedSecretSpec, **kw: Any) -> Any:
    defaults: dict[str, Any] = {
        "now": NOW,
        "last_rotation": NOW - dt.timedelta(days=1),
        "current_created": NOW - dt.timedelta(days=1),
        "stored_spec_hash": data_spec_hash(spec),
    }
    return next_rotation(spec, **(defaults | kw))


def test_initial_and_spec_changes_are_due_now() -> None:
    spec = _spec(every="30d")
    assert _next(spec, last_rotation=None).reason is Reason.INITIAL
    due = _next(spec, stored_spec_hash="0000")
    assert due.reason is Reason.SPEC_CHANGED
    assert due.is_due(NOW)
    changed = parse_spec({"secretName": "db", "data": {"p": {"password": {"length": 40}}}})
    assert data_spec_hash(changed) != data_spec_hash(spec)
    rollout_only = parse_spec(
        {"secretName": "db", "data": {"p": {"password": {}}}, "rollout": {"timeout": "1m"}}
    )
    assert data_spec_hash(rollout_only) == data_spec_hash(_spec()), "rollout settings do not rotate"


def test_every_schedule_and_max_age_earliest_wins() -> None:
    assert _next(_spec(every="30d")).at == NOW + dt.timedelta(days=29)
    at = _next(_spec(schedule="0 3 * * *")).at
    assert at <= NOW, "the 03:00 run after yesterday's noon rotation is already due"
    due = _next(_spec(every="30d", maxAge="2d"))
    assert due.reason is Reason.MAX_AGE
    assert due.at == NOW + dt.timedelta(days=1)
    assert _next(_spec()) is None, "nothing scheduled, nothing due"


def test_window_moves_the_time_to_its_opening() -> None:
    spec = _spec(every="1d", window={"hours": "02:00-04:00", "days": ["Sat", "Sun"]})
    due = _next(spec, last_rotation=NOW - dt.timedelta(days=2))  # due since yesterday noon
    assert due.at == dt.datetime(2026, 12, 5, 2, 0, tzinfo=dt.UTC)  # Saturday 02:00
    assert not due.is_due(NOW)


def _tls_spec(window: dict[str, Any] | None = None) -> ManagedSecretSpec:
    raw: dict[str, Any] = {
        "secretName": "tls",
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": {
                "x509": {"issuer": {"name": "ca"}, "commonName": "x", "renewBefore": "240h"}
            }
        },
    }
    if window:
        raw["rotation"] = {"window": window}
    return parse_spec(raw)


def test_certificates_renew_before_expiry_even_outside_the_window() -> None:
    facts = CertFacts(
        not_before=NOW - dt.timedelta(days=80),
        not_after=NOW + dt.timedelta(days=5),
        subject_cn="x",
        dns_names=(),
        is_ca=False,
        serial_hex="01",
    )
    due = _next(_tls_spec(), certificates={"tls.crt": facts})
    assert due.reason is Reason.CERTIFICATE_RENEWAL
    assert due.at == NOW, "renewal point (expiry - 10d) passed: due now"
    assert due.is_due(NOW)
    # A window that opens only after the certificate expires is ignored.
    late = _tls_spec({"days": ["Wed"], "hours": "01:00-02:00"})
    facts_soon = CertFacts(
        not_before=NOW - dt.timedelta(days=80), not_after=NOW + dt.timedelta(hours=3),
        subject_cn="x", dns_names=(), is_ca=False, serial_hex="01",
    )  # fmt: skip
    assert _next(late, certificates={"tls.crt": facts_soon}).is_due(NOW)
    assert _next(_tls_spec(), certificates={}).is_due(NOW), "no readable certificate: due"


# --------------------------------------------------------------------------- reloads
def _workload(annotations: dict[str, str]) -> Any:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": "ns", "annotations": annotations},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "used"}}]}]
                }
            }
        },
    }
    return to_object(body, Source("t", 1))


def test_opt_in_annotations() -> None:
    assert watched_secrets(_workload({})) is None
    assert watched_secrets(_workload({"kustos.io/reload": "true"})) == frozenset({"used"})
    assert watched_secrets(_workload({"reloader.stakater.com/auto": "true"})) == frozenset({"used"})
    legacy = watched_secrets(_workload({"secret.reloader.stakater.com/reload": "a, b"}))
    assert legacy == frozenset({"a", "b"})
    assert watched_secrets(_workload({"kustos.io/reload": "false"})) is None


def test_reload_decisions() -> None:
    watched = frozenset({"a", "b"})
    first = decide(None, watched, {"a": "1", "b": None})
    assert not first.restart
    assert first.record == format_hashes({"a": "1", "b": ABSENT})
    assert decide(first.record, watched, {"a": "1", "b": None}).record is None
    appeared = decide(first.record, watched, {"a": "1", "b": "9"})
    assert not appeared.restart, "a Secret that appears does not restart"
    changed = decide(appeared.record, watched, {"a": "2", "b": "9"})
    assert changed.restart
    assert changed.changed == ("a",)
    gone = decide(changed.record, watched, {"a": None, "b": "9"})
    assert not gone.restart
    assert gone.record is None, "a deleted Secret keeps its fingerprint"
    assert parse_hashes("a=1,junk,,b=2") == {"a": "1", "b": "2"}


# --------------------------------------------------------------------------- schema
def _model_fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _crd_spec_schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    return dict(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _inner(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The model type of field *name* (alias or attribute name); dict values for ``data``."""
    field = next(f for n, f in model.model_fields.items() if name in (n, f.alias))
    stack: list[Any] = [field.annotation]
    while stack:
        candidate = stack.pop()
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        stack.extend(getattr(candidate, "__args__", ()))
    raise AssertionError(f"{model.__name__}.{name} holds no model")


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("rotation",),
        ("rotation", "window"),
        ("history",),
        ("rollout",),
        ("rollout", "targets"),
        ("data",),
        ("data", "password"),
        ("data", "token"),
        ("data", "sshKeypair"),
        ("data", "x509"),
        ("data", "x509", "issuer"),
        ("data", "postgresRole"),
        ("data", "postgresRole", "adminSecret"),
        ("data", "postgresRole", "password"),
        ("data", "dockerConfig"),
        ("data", "vault"),
        ("data", "vault", "source"),
        ("data", "awsSecretsManager"),
        ("data", "awsSecretsManager", "source"),
        ("data", "sealed"),
        ("push",),
        ("push", "source"),
    ],
)
def test_crd_schema_and_models_name_the_same_fields(path: tuple[str, ...]) -> None:
    schema = _crd_spec_schema()
    model: type[BaseModel] = ManagedSecretSpec
    for step in path:
        schema = schema["properties"][step]
        schema = schema.get("additionalProperties") or schema.get("items") or schema
        model = _inner(model, step)
    assert set(schema["properties"]) == _model_fields(model)


# --------------------------------------------------------------------------- postgres
def test_scram_verifier_is_what_postgres_stores() -> None:
    salt = bytes(range(16))
    verifier = scram_verifier(Sensitive(b"pencil"), salt=salt, iterations=4096)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt_b64 = iterations_salt.split(":")
    stored_b64, server_b64 = keys.split(":")
    assert (method, iterations, base64.b64decode(salt_b64)) == ("SCRAM-SHA-256", "4096", salt)
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored_b64) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server_b64) == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "pencil" not in verifier
