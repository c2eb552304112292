"""Detectors: audit events in, alerts out, the clock taken from the events.

Purely data-manipulative: no I/O, no wall clock. A :class:`Detector` holds its
configuration (:class:`DetectorsConfig`, the ``detectors:`` section of the Watch config
file) and a :class:`WatchState` — the learned baselines (who read which Secret, from which
addresses each principal calls) and the short sliding windows (bulk reads, denied
bursts, exec sessions). ``watching`` persists that state in the archive folder so that a
restart does not learn again; here it is only a value.

What each detector looks at (an event is counted once per ``auditID``: the first of its
``ResponseStarted``/``ResponseComplete``/``Panic`` stages; ``RequestReceived`` is ignored):

- ``first_secret_read``: a principal reads (get, or list/watch naming one) a Secret it was
  never seen reading before;
- ``new_source_ip``: a principal calls from an address (the last of ``sourceIPs``, the
  only one the client cannot forge) never seen for it; pod ServiceAccounts change address
  with every pod and are left out unless asked for;
- ``off_hours``: a successful Secret read outside the configured hours and days;
- ``bulk_read``: a cluster-wide list or watch of Secrets, or one principal reading many
  distinct Secrets, or listing Secrets in many namespaces, within a short window;
- ``anonymous``: a request by ``system:anonymous``/``system:unauthenticated`` or one that
  failed authentication (401), health probes excepted;
- ``denied_burst``: many 401/403 answers to one principal within a window;
- ``exec_then_secret``: an exec or attach into a pod followed, within a window, by a Secret
  read by the same principal or by the pod's own ServiceAccount token;
- ``secret_changed``: a Secret created, changed or deleted by anyone but the rotation
  operator's ServiceAccount and an allow-list;
- ``policy_leak``: an event carried a Secret's body (the receiver stripped it and marked
  the event with the ``kustos.io/values-stripped`` annotation), so the audit policy leaks.

Baselines apply a learning period: during the first ``learning_period`` of event time the
first-seen detectors record without alerting. Platform identities (nodes, controllers,
``kube-system`` ServiceAccounts, the operator) are ignored by the behavioural detectors.
Alerts carry names and audit IDs only; detectors never read request or response bodies.

May import: ``kustos.audit.alerts``, ``kustos.audit.records`` (pure), ``kustos.durations``,
``kustos.errors``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
import zoneinfo
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kustos.audit.alerts import Alert, Severity
from kustos.audit.records import (
    STRIPPED_ANNOTATION,
    ArchivedEvent,
    EventView,
    RefView,
    view_of,
)
from kustos.durations import parse_duration

#: Annotation the receiver adds to an event whose request or response body it removed.
ANNOTATION_STRIPPED: Final = STRIPPED_ANNOTATION
#: The rotation operator's identity (``deploy/rotation/operator.yaml``).
OPERATOR_USER: Final = "system:serviceaccount:kustos-system:kustos-operator"
#: Platform identities whose Secret traffic is routine (globs on the username).
PLATFORM_USERS: Final = (
    "system:node:*",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:kube-proxy",
    "system:apiserver",
    "system:serviceaccount:kube-system:*",
    OPERATOR_USER,
)
SECRET_READS: Final = frozenset({"get", "list", "watch"})
SECRET_WRITES: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_NO_REF: Final = RefView()
_COUNTED_STAGES: Final = frozenset({"ResponseStarted", "ResponseComplete", "Panic"})
_HEALTH: Final = re.compile(r"^/(healthz|livez|readyz|version|openapi)(/|$|\?)")
_ANONYMOUS_GROUP: Final = "system:unauthenticated"
_ANONYMOUS_USER: Final = "system:anonymous"
_SA: Final = "system:serviceaccount:"
_PAST: Final = {
    "create": "created",
    "update": "updated",
    "patch": "patched",
    "delete": "deleted",
    "deletecollection": "deleted a collection including",
}
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: At most this many audit IDs are quoted in one alert.
MAX_IDS: Final = 20
#: At most this many addresses are remembered per principal (oldest forgotten first).
MAX_ADDRESSES: Final = 256
#: How many recent audit IDs are kept to count a request once across its stages.
RECENT_IDS: Final = 4096
#: Ignore-list answers cached per (principal, detector); a cluster has thousands of
#: ServiceAccounts, and a cache smaller than that is cleared and refilled on every batch.
IGNORE_CACHE: Final = 1 << 16


#: The detectors in the order of their ignore bits (:meth:`Detector.ignore_bits`).
DETECTORS: Final = (
    "first_secret_read",
    "new_source_ip",
    "off_hours",
    "bulk_read",
    "anonymous",
    "denied_burst",
    "exec_then_secret",
    "secret_changed",
    "policy_leak",
)
#: :meth:`Detector.ignore_bits`: the global list (platform identities), and
#: ``secret_changed.allow_users``.
PLATFORM_BIT: Final = 1
ALLOWED_WRITER_BIT: Final = 1 << 10


class ArchivedLike(Protocol):
    """What the archive hands the detectors (``kustos.audit.records.ArchivedEvent``)."""

    @property
    def seq(self) -> int: ...

    @property
    def event(self) -> Mapping[str, Any]: ...


# --------------------------------------------------------------------------- config
def _duration(text: str, *, zero_ok: bool = False) -> dt.timedelta:
    if zero_ok and text.strip() in {"0", "0s"}:
        return dt.timedelta(0)
    return parse_duration(text)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    ignore_users: tuple[str, ...] = ()


class _Windowed(_Section):
    window: str = "1m"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value)
        return value


class FirstSecretRead(_Section):
    """``first_secret_read``: a principal reads a Secret for the first time."""

    severity: Severity = Severity.MEDIUM


class NewSourceIp(_Section):
    """``new_source_ip``: a principal calls from an address never seen for it."""

    severity: Severity = Severity.LOW
    include_service_accounts: bool = False


class OffHours(_Section):
    """``off_hours``: Secret reads outside working hours (off unless configured)."""

    enabled: bool = False
    severity: Severity = Severity.MEDIUM
    include_service_accounts: bool = False
    timezone: str = "UTC"
    hours: str = "08:00-18:00"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value[:40]!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        _parse_hours(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        days = tuple(d.lower()[:3] for d in value)
        bad = [d for d in days if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown day {bad[0]!r} (use mon, tue, ... sun)")
        return days


class BulkRead(_Windowed):
    """``bulk_read``: enumeration of Secrets."""

    severity: Severity = Severity.HIGH
    window: str = "1m"
    distinct_secrets: int = Field(default=10, ge=2)
    namespaces: int = Field(default=3, ge=2)
    cluster_wide: bool = True


class Anonymous(_Section):
    """``anonymous``: unauthenticated requests."""

    severity: Severity = Severity.HIGH


class DeniedBurst(_Windowed):
    """``denied_burst``: many refused requests by one principal."""

    severity: Severity = Severity.MEDIUM
    window: str = "1m"
    threshold: int = Field(default=10, ge=2)


class ExecThenSecret(_Windowed):
    """``exec_then_secret``: exec or attach into a pod, then Secret reads."""

    severity: Severity = Severity.HIGH
    window: str = "10m"


class SecretChanged(_Section):
    """``secret_changed``: a Secret written by someone other than the operator."""

    severity: Severity = Severity.MEDIUM
    operator: str = OPERATOR_USER
    allow_users: tuple[str, ...] = (
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:*",
    )


class PolicyLeak(_Section):
    """``policy_leak``: the audit policy sent a Secret body."""

    severity: Severity = Severity.CRITICAL


class DetectorsConfig(BaseModel):
    """The ``detectors:`` section of the Watch config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_period: str = "24h"
    cooldown: str = "10m"
    ignore_users: tuple[str, ...] = PLATFORM_USERS
    first_secret_read: FirstSecretRead = FirstSecretRead()
    new_source_ip: NewSourceIp = NewSourceIp()
    off_hours: OffHours = OffHours()
    bulk_read: BulkRead = BulkRead()
    anonymous: Anonymous = Anonymous()
    denied_burst: DeniedBurst = DeniedBurst()
    exec_then_secret: ExecThenSecret = ExecThenSecret()
    secret_changed: SecretChanged = SecretChanged()
    policy_leak: PolicyLeak = PolicyLeak()

    @field_validator("learning_period")
    @classmethod
    def _learning(cls, value: str) -> str:
        _duration(value, zero_ok=True)
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        _duration(value, zero_ok=True)
        return value

    @model_validator(mode="after")
    def _globs(self) -> DetectorsConfig:
        for glob in self.ignore_users:
            if not glob:
                raise ValueError("ignore_users: an empty pattern")
        return self


def _parse_hours(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if match is None:
        raise ValueError(f"hours {text[:40]!r}: use HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"hours {text[:40]!r}: not a time of day")
    return h1 * 60 + m1, h2 * 60 + m2


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class Request:
    """The metadata of one audit event that the detectors use (never a body)."""

    audit_id: str
    time: dt.datetime
    user: str
    groups: tuple[str, ...]
    impersonator: str | None
    verb: str
    resource: str
    subresource: str
    namespace: str | None
    name: str | None
    source_ip: str | None
    code: int | None
    uri: str
    pod_name: str | None
    stripped: bool
    has_body: bool

    @property
    def allowed(self) -> bool:
        """The API server let the request through (no code yet counts: exec upgrades)."""
        return self.code is None or self.code < 400

    @property
    def denied(self) -> bool:
        """Refused: authentication (401) or authorization (403)."""
        return self.code in (401, 403)

    @property
    def is_secret(self) -> bool:
        """The request is about Secrets (not a subresource of something else)."""
        return self.resource == "secrets" and not self.subresource

    @property
    def stamp(self) -> str:
        """The event's time as RFC 3339 in UTC."""
        return self.time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """An audit MicroTime (``2024-12-13T05:28:40.005508Z``) as an aware datetime."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    """When the request was received (or the stage, or the event, was written); ``None``."""
    return view_time(view_of(event))


def view_time(view: EventView) -> dt.datetime | None:
    """:func:`event_time` of an event's view."""
    meta = view.metadata
    for value in (
        view.requestReceivedTimestamp,
        view.stageTimestamp,
        view.timestamp,
        meta.creationTimestamp if meta is not None else "",
    ):
        if value:
            try:
                return parse_time(value)
            except ValueError:
                continue
    return None


def request_of(event: Mapping[str, Any] | EventView) -> Request | None:
    """The detector's view of *event*, or ``None`` for a stage or shape it does not count."""
    view = event if isinstance(event, EventView) else view_of(event)
    if view.stage not in _COUNTED_STAGES or not view.auditID:
        return None
    when = view_time(view)
    if when is None:
        return None
    user = view.user
    acting = view.impersonatedUser
    impersonator = None
    if acting is not None and acting.username:
        impersonator = user.username if user is not None else None
        user = acting
    pod = None
    if user is not None and user.extra is not None and user.extra.pod_name:
        pod = user.extra.pod_name[0]
    ref = view.objectRef or _NO_REF
    code = view.responseStatus.code if view.responseStatus is not None else None
    return Request(
        view.auditID,
        when,
        (user.username or "") if user is not None else "",
        user.groups if user is not None else (),
        impersonator,
        view.verb,
        ref.resource,
        ref.subresource,
        ref.namespace or None,
        ref.name or None,
        view.sourceIPs[-1] if view.sourceIPs and view.sourceIPs[-1] else None,
        code,
        view.requestURI,
        pod,
        view.stripped is not None,
        # A body that is null is no body (strict decode keeps it as None).
        bool(view.requestObject) or bool(view.responseObject),
    )


# --------------------------------------------------------------------------- state
@dataclass
class WatchState:
    """What the detectors remember between events (and, through ``watching``, restarts)."""

    #: Event time of the first event ever seen (start of the learning period).
    started: dt.datetime | None = None
    #: Sequence number of the last archived event processed (the detectors' cursor).
    last_seq: int = 0
    secret_readers: set[tuple[str, str, str]] = field(default_factory=set)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    #: detector → principal → recent (epoch seconds, key, audit id), oldest first.
    windows: dict[str, dict[str, deque[tuple[float, str, str]]]] = field(default_factory=dict)
    #: detector → principal → key → (epoch seconds, audit id), least recent first.
    distinct: dict[str, dict[str, OrderedDict[str, tuple[float, str]]]] = field(
        default_factory=dict
    )
    #: pod ``ns/name`` or principal → (epoch seconds, audit id, who exec'ed, pod)
    sessions: dict[str, tuple[float, str, str, str]] = field(default_factory=dict)
    #: alert key → epoch seconds of the last alert (rate limit).
    cooldowns: dict[str, float] = field(default_factory=dict)
    recent_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)


@functools.lru_cache(maxsize=64)
def _glob_pattern(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression for a whole ignore list (one match instead of one per glob)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs) or "(?!)")


def _matches(user: str, globs: Iterable[str]) -> bool:
    return _glob_pattern(tuple(globs)).match(user) is not None


def _offset(zone: zoneinfo.ZoneInfo, second: int) -> int:
    offset = dt.datetime.fromtimestamp(second, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _secret_label(namespace: str | None, name: str | None) -> str:
    return f"{namespace or '*'}/{name or '*'}"


def _reading(req: Request) -> str:
    """``read Secret ns/name``, ``listed the Secrets of ns``, ``watched ... every namespace``."""
    if req.name is not None:
        return f"read Secret {req.namespace or '-'}/{req.name}"
    verb = {"list": "listed", "watch": "watched"}.get(req.verb, req.verb)
    where = f"namespace {req.namespace}" if req.namespace else "every namespace"
    return f"{verb} the Secrets of {where}"


def _who(req: Request) -> str:
    return f"{req.user} (impersonated by {req.impersonator})" if req.impersonator else req.user


class Detector:
    """Every configured detector over one :class:`WatchState`."""

    def __init__(self, config: DetectorsConfig, state: WatchState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else WatchState()
        self._learning = _duration(config.learning_period, zero_ok=True)
        self._cooldown = _duration(config.cooldown, zero_ok=True).total_seconds()
        self._bulk_window = parse_duration(config.bulk_read.window).total_seconds()
        self._denied_window = parse_duration(config.denied_burst.window).total_seconds()
        self._exec_window = parse_duration(config.exec_then_secret.window).total_seconds()
        self._hours = _parse_hours(config.off_hours.hours)
        self._zone = zoneinfo.ZoneInfo(config.off_hours.timezone)
        self._ignore_cache: dict[tuple[str, str], bool] = {}
        #: username → platform identity (the global ignore list), for the fast path.
        self._platform: dict[str | None, bool] = {}
        self._prune_at = RECENT_IDS
        self._sessions_at = RECENT_IDS
        #: Whose addresses the new-address detector watches (the others' requests about
        #: anything but Secrets are routine).
        self._watch_addresses = config.new_source_ip.enabled
        self._watch_sa_addresses = config.new_source_ip.include_service_accounts

    # ------------------------------------------------------------------ native core
    def ignore_bits(self, user: str) -> int:
        """Which ignore lists *user* is on: bit 0 the global one, bit 1 + i that of
        ``DETECTORS[i]``, :data:`ALLOWED_WRITER_BIT` ``secret_changed.allow_users``."""
        bits = PLATFORM_BIT if self._is(user, "") else 0
        for n, detector in enumerate(DETECTORS):
            if self._section(detector) and self._is(user, detector):  # most lists are empty
                bits |= 1 << (1 + n)
        allowed = self.config.secret_changed.allow_users
        if allowed and _matches(user, allowed):
            bits |= ALLOWED_WRITER_BIT
        return bits

    def zone_offset(self, second: int, hour: bool) -> tuple[int, bool]:
        """The off-hours zone's UTC offset (seconds) at epoch *second*, and with *hour*
        whether it stays the same for the hour that starts there."""
        offset = _offset(self._zone, second)
        return offset, hour and _offset(self._zone, second + 3599) == offset

    @property
    def prune_thresholds(self) -> tuple[int, int]:
        """When the cooldown and exec-session tables are pruned next (their sizes)."""
        return self._prune_at, self._sessions_at

    @prune_thresholds.setter
    def prune_thresholds(self, value: tuple[int, int]) -> None:
        self._prune_at, self._sessions_at = value

    def native_settings(self) -> dict[str, Any]:
        """This configuration as the native core's ``Detector`` takes it."""
        cfg = self.config
        hours = cfg.off_hours
        lists = [(PLATFORM_BIT, list(cfg.ignore_users))]
        lists += [(1 << (1 + n), list(self._section(d))) for n, d in enumerate(DETECTORS)]
        lists.append((ALLOWED_WRITER_BIT, list(cfg.secret_changed.allow_users)))
        return {
            "ignore_lists": [(bit, globs) for bit, globs in lists if globs],
            "learning": self._learning // dt.timedelta(microseconds=1),
            "cooldown": self._cooldown,
            "bulk_window": self._bulk_window,
            "denied_window": self._denied_window,
            "exec_window": self._exec_window,
            "enabled": [getattr(cfg, d).enabled for d in DETECTORS],
            "severities": [str(getattr(cfg, d).severity) for d in DETECTORS],
            "new_ip_service_accounts": cfg.new_source_ip.include_service_accounts,
            "off_hours_service_accounts": hours.include_service_accounts,
            "hours": self._hours,
            "days": [_DAYS.index(d) for d in hours.days],
            "off_hours_suffix": f"{hours.timezone}, outside {hours.hours} {','.join(hours.days)}",
            "bulk_secrets": cfg.bulk_read.distinct_secrets,
            "bulk_namespaces": cfg.bulk_read.namespaces,
            "cluster_wide": cfg.bulk_read.cluster_wide,
            "bulk_window_text": cfg.bulk_read.window,
            "denied_threshold": cfg.denied_burst.threshold,
            "denied_window_text": cfg.denied_burst.window,
            "exec_window_text": cfg.exec_then_secret.window,
            "operator": cfg.secret_changed.operator,
        }

    # ------------------------------------------------------------------ driving
    def process(self, events: Iterable[ArchivedLike]) -> list[Alert]:
        """Feed archived events (in sequence order); return the alerts they raise.

        Events at or before ``state.last_seq`` were seen already and are skipped, so the
        same batch delivered twice raises nothing twice.
        """
        alerts: list[Alert] = []
        state = self.state
        for archived in events:
            if archived.seq <= state.last_seq:
                continue
            state.last_seq = archived.seq
            # The archive's own events carry their view; others are read from their event.
            view = archived.view if type(archived) is ArchivedEvent else view_of(archived.event)
            if state.started is not None and self._routine(view):
                continue  # the common case, without building a generator
            self._observe(view, alerts)
        return alerts

    def observe(self, event: Mapping[str, Any] | EventView) -> Iterator[Alert]:
        """The alerts one event raises (and the baselines it updates)."""
        view = event if isinstance(event, EventView) else view_of(event)
        if self.state.started is not None and self._routine(view):
            return
        out: list[Alert] = []
        self._observe(view, out)
        yield from out

    def _observe(self, view: EventView, out: list[Alert]) -> None:
        req = request_of(view)
        if req is None or not self._first_time(req.audit_id):
            return
        state = self.state
        if state.started is None:
            state.started = req.time
        learning = req.time - state.started < self._learning
        cfg = self.config
        platform = self._is(req.user, "")
        if cfg.policy_leak.enabled and (req.stripped or (req.is_secret and req.has_body)):
            self._limited(req, "policy_leak", req.resource, self._policy_leak(req), out)
        anonymous = self._anonymous(req)
        if cfg.anonymous.enabled and anonymous:
            self._limited(req, "anonymous", req.source_ip or "", self._anon(req), out)
        if cfg.secret_changed.enabled and req.is_secret and req.verb in SECRET_WRITES:
            self._changed(req, out)
        if platform:
            return
        if cfg.denied_burst.enabled and req.denied and not anonymous:  # anonymous says it
            self._denied(req, out)
        if cfg.new_source_ip.enabled:
            self._new_address(req, out, learning=learning)
        if cfg.exec_then_secret.enabled and req.resource == "pods" and req.allowed:
            self._remember_exec(req)
        if not (req.is_secret and req.verb in SECRET_READS and req.allowed):
            return
        if cfg.first_secret_read.enabled:
            self._first_read(req, out, learning=learning)
        if cfg.off_hours.enabled:
            self._off_hours(req, out)
        if cfg.bulk_read.enabled:
            self._bulk(req, out)
        if cfg.exec_then_secret.enabled:
            self._after_exec(req, out)

    def _routine(self, view: EventView) -> bool:
        """A request that no detector can fire on or learn from: skipped cheaply.

        Most of a cluster's audit traffic is controllers and nodes working on leases,
        pods and events, the kubelet reading Secrets, and workloads calling the API about
        anything but Secrets. A platform identity matters only through a Secret write, a
        body or a failed authentication; any other principal also through a Secret
        request, a refusal, an exec or attach, impersonation or (when the new-address
        detector watches it) its address. This check reads a few fields of the view.
        """
        acting = view.impersonatedUser
        user = acting if acting is not None and acting.username else view.user
        ref = view.objectRef
        if user is None or user.username is None or ref is None:
            return False
        status = view.responseStatus
        code = status.code if status is not None else None
        if code == 401 or view.stripped is not None:
            return False
        name = user.username
        platform = self._platform.get(name)
        if platform is None:
            platform = self._is(name, "")
        if platform:
            return ref.resource != "secrets" or (view.verb in SECRET_READS and not view.has_body)
        if ref.resource == "secrets" or view.has_body or acting is not None:
            return False
        if code is not None and code >= 400:
            return False
        if ref.resource == "pods" and ref.subresource in ("exec", "attach"):
            return False
        if name == _ANONYMOUS_USER or _ANONYMOUS_GROUP in user.groups:
            return False
        # Left: the new-address detector, for the principals it watches.
        watched = self._watch_sa_addresses or not name.startswith(_SA)
        return not (self._watch_addresses and watched)

    def _is(self, user: str, detector: str) -> bool:
        """*user* matches the ignore list of *detector* (``""``: the global one); cached."""
        key = (user, detector)
        found = self._ignore_cache.get(key)
        if found is None:
            globs = self.config.ignore_users if not detector else self._section(detector)
            found = _matches(user, globs)
            if not detector:
                self._platform[user] = found
            if len(self._ignore_cache) > IGNORE_CACHE:
                self._ignore_cache.clear()
                self._platform.clear()
            self._ignore_cache[key] = found
        return found

    def _section(self, detector: str) -> tuple[str, ...]:
        section: _Section = getattr(self.config, detector)
        return section.ignore_users

    def _first_time(self, audit_id: str) -> bool:
        recent = self.state.recent_ids
        if audit_id in recent:
            return False
        recent[audit_id] = None
        if len(recent) > RECENT_IDS:
            recent.popitem(last=False)
        return True

    # ------------------------------------------------------------------ helpers
    def _alert(self, req: Request, detector: str, message: str, **extra: Any) -> Alert:
        section = getattr(self.config, detector)
        return Alert(
            detector=detector,
            severity=section.severity,
            time=req.stamp,
            user=req.user,
            source_ip=req.source_ip,
            namespace=extra.get("namespace", req.namespace),
            name=extra.get("name", req.name),
            audit_ids=tuple(extra.get("audit_ids", (req.audit_id,)))[:MAX_IDS],
            message=message,
        )

    def _limited(
        self, req: Request, detector: str, key: str, alert: Alert | None, out: list[Alert]
    ) -> None:
        """Add *alert* to *out* unless the same detector and key alerted within the cooldown."""
        if alert is None:
            return
        slot = f"{detector}\x00{req.user}\x00{key}"
        now = req.time.timestamp()
        last = self.state.cooldowns.get(slot)
        if last is not None and now - last < self._cooldown:
            return
        cooldowns = self.state.cooldowns
        cooldowns[slot] = now
        if len(cooldowns) > self._prune_at:  # amortised: prune when the table doubled
            horizon = now - self._cooldown
            self.state.cooldowns = {k: v for k, v in cooldowns.items() if v > horizon}
            self._prune_at = max(RECENT_IDS, 2 * len(self.state.cooldowns))
        out.append(alert)

    def _ignored(self, req: Request, detector: str) -> bool:
        return self._is(req.user, detector)

    def _distinct(
        self, detector: str, req: Request, key: str, span: float
    ) -> OrderedDict[str, tuple[float, str]]:
        """Distinct keys a principal used within *span*: key → (last time, audit id).

        Insertion order is recency (a key seen again moves to the end), so expired keys
        are dropped from the front and a principal re-reading one Secret costs O(1).
        """
        per_user = self.state.distinct.setdefault(detector, {})
        seen = per_user.get(req.user)
        if seen is None:
            seen = per_user[req.user] = OrderedDict()
        now = req.time.timestamp()
        seen[key] = (now, req.audit_id)
        seen.move_to_end(key)
        horizon = now - span
        while seen:
            oldest = next(iter(seen))  # O(1) on an OrderedDict, even after many deletions
            if seen[oldest][0] > horizon:
                break
            seen.popitem(last=False)
        return seen

    def _window(
        self, detector: str, req: Request, key: str, span: float
    ) -> deque[tuple[float, str, str]]:
        per_user = self.state.windows.setdefault(detector, {})
        entries = per_user.setdefault(req.user, deque())
        now = req.time.timestamp()
        entries.append((now, key, req.audit_id))
        while entries and entries[0][0] <= now - span:
            entries.popleft()
        return entries

    # ------------------------------------------------------------------ detectors
    def _policy_leak(self, req: Request) -> Alert:
        what = _secret_label(req.namespace, req.name) if req.is_secret else req.resource
        return self._alert(
            req,
            "policy_leak",
            f"the audit policy logs request or response bodies of {req.resource or 'objects'}"
            f" ({req.verb} {what}); the receiver stripped them: log Secrets at Metadata level",
        )

    @staticmethod
    def _anonymous(req: Request) -> bool:
        anonymous = req.user == _ANONYMOUS_USER or _ANONYMOUS_GROUP in req.groups
        if not (anonymous or req.code == 401):
            return False
        return bool(req.resource) or not _HEALTH.match(req.uri)

    def _anon(self, req: Request) -> Alert | None:
        if self._ignored(req, "anonymous"):
            return None
        target = req.resource or req.uri.split("?", 1)[0]
        if req.code == 401:
            outcome = "failed authentication"
        else:
            outcome = "was allowed" if req.allowed else f"was refused ({req.code})"
        return self._alert(
            req,
            "anonymous",
            f"unauthenticated {req.verb or 'request'} on {target} {outcome}",
        )

    def _changed(self, req: Request, out: list[Alert]) -> None:
        section = self.config.secret_changed
        if not req.allowed or req.user == section.operator:
            return
        if _matches(req.user, section.allow_users) or self._ignored(req, "secret_changed"):
            return
        verb = _PAST.get(req.verb, req.verb)
        out.append(
            self._alert(
                req,
                "secret_changed",
                f"{_who(req)} {verb} Secret {_secret_label(req.namespace, req.name)}"
                " (not the rotation operator nor an allowed writer)",
            )
        )

    def _denied(self, req: Request, out: list[Alert]) -> None:
        if self._ignored(req, "denied_burst"):
            return
        section = self.config.denied_burst
        entries = self._window("denied_burst", req, req.resource or req.uri, self._denied_window)
        if len(entries) < section.threshold:
            return
        alert = self._alert(
            req,
            "denied_burst",
            f"{_who(req)} was refused {len(entries)} requests within {section.window}",
            audit_ids=[e[2] for e in entries],
            namespace=None,
            name=None,
        )
        self._limited(req, "denied_burst", "", alert, out)

    def _new_address(self, req: Request, out: list[Alert], *, learning: bool) -> None:
        section = self.config.new_source_ip
        if req.source_ip is None or not req.user or self._ignored(req, "new_source_ip"):
            return
        if req.user.startswith(_SA) and not section.include_service_accounts:
            return
        known = self.state.addresses.setdefault(req.user, [])
        if req.source_ip in known:
            return
        first_ever = not known
        known.append(req.source_ip)
        if len(known) > MAX_ADDRESSES:
            del known[0]
        if learning or first_ever:
            return  # the first address of a principal is its baseline, not news
        out.append(
            self._alert(
                req,
                "new_source_ip",
                f"{_who(req)} called from {req.source_ip}, never seen for it"
                f" (known: {', '.join(known[-4:-1])})",
            )
        )

    def _first_read(self, req: Request, out: list[Alert], *, learning: bool) -> None:
        if req.name is None or req.namespace is None or self._ignored(req, "first_secret_read"):
            return
        key = (req.user, req.namespace, req.name)
        if key in self.state.secret_readers:
            return
        self.state.secret_readers.add(key)
        if learning:
            return
        out.append(
            self._alert(
                req,
                "first_secret_read",
                f"{_who(req)} read Secret {req.namespace}/{req.name} ({req.verb})"
                " for the first time",
            )
        )

    def _off_hours(self, req: Request, out: list[Alert]) -> None:
        section = self.config.off_hours
        if self._ignored(req, "off_hours"):
            return
        if req.user.startswith(_SA) and not section.include_service_accounts:
            return  # workloads read at every hour
        local = req.time.astimezone(self._zone)
        minute = local.hour * 60 + local.minute
        start, end = self._hours
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        if inside and _DAYS[local.weekday()] in section.days:
            return
        alert = self._alert(
            req,
            "off_hours",
            f"{_who(req)} {_reading(req)} at"
            f" {local.strftime('%a %H:%M')} {section.timezone}, outside {section.hours}"
            f" {','.join(section.days)}",
        )
        self._limited(req, "off_hours", _secret_label(req.namespace, req.name), alert, out)

    def _bulk(self, req: Request, out: list[Alert]) -> None:
        section = self.config.bulk_read
        if self._ignored(req, "bulk_read"):
            return
        if req.verb in ("list", "watch") and req.name is None:
            if req.namespace is None and section.cluster_wide:
                alert = self._alert(
                    req,
                    "bulk_read",
                    f"{_who(req)} {_reading(req)}",
                )
                self._limited(req, "bulk_read", "cluster", alert, out)
                return
            spaces = self._distinct("bulk_namespaces", req, req.namespace or "", self._bulk_window)
            if len(spaces) >= section.namespaces:
                alert = self._alert(
                    req,
                    "bulk_read",
                    f"{_who(req)} listed Secrets in {len(spaces)} namespaces within"
                    f" {section.window}",
                    audit_ids=[v[1] for v in spaces.values()],
                    namespace=None,
                )
                self._limited(req, "bulk_read", "namespaces", alert, out)
            return
        label = _secret_label(req.namespace, req.name)
        names = self._distinct("bulk_secrets", req, label, self._bulk_window)
        if len(names) >= section.distinct_secrets:
            alert = self._alert(
                req,
                "bulk_read",
                f"{_who(req)} read {len(names)} distinct Secrets within {section.window}",
                audit_ids=[v[1] for v in names.values()],
                name=None,
                namespace=req.namespace if len({n.split("/")[0] for n in names}) == 1 else None,
            )
            self._limited(req, "bulk_read", "secrets", alert, out)

    def _remember_exec(self, req: Request) -> None:
        if req.subresource not in ("exec", "attach") or self._ignored(req, "exec_then_secret"):
            return
        pod = f"{req.namespace}/{req.name}"
        session = (req.time.timestamp(), req.audit_id, req.user, pod)
        self.state.sessions[f"user\x00{req.user}"] = session
        self.state.sessions[f"pod\x00{pod}"] = session
        horizon = req.time.timestamp() - self._exec_window
        if len(self.state.sessions) > self._sessions_at:
            self.state.sessions = {k: v for k, v in self.state.sessions.items() if v[0] > horizon}
            self._sessions_at = max(RECENT_IDS, 2 * len(self.state.sessions))

    def _after_exec(self, req: Request, out: list[Alert]) -> None:
        now = req.time.timestamp()
        candidates = [self.state.sessions.get(f"user\x00{req.user}")]
        if req.pod_name is not None and req.user.startswith(_SA):
            namespace = req.user.split(":")[2]
            candidates.append(self.state.sessions.get(f"pod\x00{namespace}/{req.pod_name}"))
        for session in candidates:
            if session is None or not 0 <= now - session[0] <= self._exec_window:
                continue
            _, exec_id, execer, pod = session
            via = "" if execer == req.user else f" from inside pod {pod} (exec by {execer})"
            alert = self._alert(
                req,
                "exec_then_secret",
                f"{_who(req)} {_reading(req)}{via}"
                f" within {self.config.exec_then_secret.window} of an exec into {pod}",
                audit_ids=[exec_id, req.audit_id],
            )
            self._limited(
                req, "exec_then_secret", _secret_label(req.namespace, req.name), alert, out
            )
            return


def detect(
    events: Sequence[Mapping[str, Any]], config: DetectorsConfig | None = None
) -> list[Alert]:
    """Run fresh detectors over plain events, in order; for tests and one-off runs."""
    detector = Detector(config or DetectorsConfig())
    out: list[Alert] = []
    for event in events:
        out.extend(detector.observe(event))
    return out
