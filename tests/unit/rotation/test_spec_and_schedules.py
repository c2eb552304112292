"""ManagedSecret spec parsing, durations, cron schedules and rotation windows.

Aspects covered:
- ``parse_spec``: a full spec with every section reads into typed values with aliases and
  defaults; ``produced_keys`` lists companion keys; each invalid spec gives one
  ``InvalidSpecError`` (an ``InputError``) whose message starts with the bad field;
- ``parse_duration``/``format_duration``: units, compound and fractional values, round
  trips, and refusals (empty, unknown unit, zero, spaces, longer than ten years, huge
  numbers that overflow a timedelta);
- ``parse_cron(...).next_after``: strictly after, lists, ranges, steps, month and day
  names, macros, Sunday as 0 or 7, the day-of-month / day-of-week OR rule, month ends,
  Feb 29 in a leap year, other time zones; schedules that never match or are malformed
  are refused naming the field;
- ``parse_window``: plain hours, hours wrapping past midnight (belonging to the day
  they start), days, the whole day, ``next_open``, and malformed windows.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from kustos.durations import (
    MAX_DURATION,
    InvalidDurationError,
    format_duration,
    parse_duration,
)
from kustos.errors import InputError, InvalidSpecError
from kustos.rotation.schedules import InvalidScheduleError, parse_cron, parse_window
from kustos.rotation.spec import (
    DEFAULT_KEEP,
    X509,
    PostgresRole,
    PostgresStrategy,
    RolloutStrategy,
    SecretType,
    SshAlgorithm,
    TokenEncoding,
    parse_spec,
    produced_keys,
)

UTC = dt.UTC

FULL: dict[str, Any] = {
    "secretName": "shop-db",
    "type": "kubernetes.io/tls",
    "data": {
        "tls.crt": {
            "x509": {
                "issuer": {"name": "shop-ca"},
                "commonName": "shop",
                "dnsNames": ["shop.svc"],
                "duration": "720h",
                "renewBefore": "240h",
                "caKey": "ca.crt",
                "keyAlgorithm": "rsa-2048",
            }
        },
        "password": {
            "postgresRole": {
                "host": "pg.db",
                "adminSecret": {"name": "pg-admin"},
                "role": "shop",
                "sslmode": "require",
                "password": {"length": 24, "exclude": "'\"", "symbols": True},
            }
        },
        "id_ed25519": {"sshKeypair": {"comment": "shop", "publicKeyKey": "authorized"}},
        "api-token": {"token": {"bytes": 48, "encoding": "base64url"}},
        "instance": {"uuid": {}},
        "dsn": {"template": "postgres://{{ username }}:{{ password }}@pg.db/shop"},
        "pull": {
            "dockerConfig": {"registry": "r.test", "username": "bot", "passwordFrom": "api-token"}
        },
    },
    "rotation": {
        "schedule": "0 3 * * SUN",
        "window": {"hours": "02:00-05:00", "days": ["Sat", "Sun"]},
        "maxAge": "30d",
    },
    "history": {"keep": 3},
    "rollout": {
        "strategy": "targets",
        "targets": [{"kind": "Deployment", "name": "shop"}],
        "timeout": "5m",
        "rollbackOnFailure": False,
        "maxConcurrent": 2,
    },
}


def test_full_spec_reads_into_typed_values() -> None:
    spec = parse_spec(copy.deepcopy(FULL))
    assert spec.secret_name == "shop-db"
    assert spec.type is SecretType.TLS
    assert spec.data["tls.crt"].kind == "x509"
    cert = spec.data["tls.crt"].config
    assert isinstance(cert, X509)
    assert (cert.issuer.name, cert.renew_before, cert.key_algorithm) == (
        "shop-ca",
        "240h",
        "rsa-2048",
    )
    assert cert.private_key_key == "tls.key"
    role = spec.data["password"].config
    assert isinstance(role, PostgresRole)
    assert role.strategy is PostgresStrategy.ALTERNATING
    assert role.roles() == ("shop_a", "shop_b")
    assert (role.port, role.username_key, role.password.length) == (5432, "username", 24)
    ssh = spec.data["id_ed25519"].config
    assert ssh.algorithm is SshAlgorithm.ED25519
    assert spec.data["api-token"].config.encoding is TokenEncoding.BASE64URL
    assert spec.rotation.window is not None
    assert spec.rotation.window.days == ("Sat", "Sun")
    assert spec.history.keep == 3
    assert spec.rollout.strategy is RolloutStrategy.TARGETS
    assert spec.rollout.rollback_on_failure is False
    assert produced_keys(spec) == [
        "tls.crt",
        "tls.key",
        "ca.crt",
        "password",
        "username",
        "id_ed25519",
        "authorized",
        "api-token",
        "instance",
        "dsn",
        "pull",
    ]


def test_minimal_spec_defaults() -> None:
    spec = parse_spec({"secretName": "s", "data": {"p": {"password": {}}}})
    assert spec.type is SecretType.OPAQUE
    assert spec.history.keep == DEFAULT_KEEP
    assert spec.rollout.strategy is RolloutStrategy.AUTO
    assert spec.rollout.rollback_on_failure is True
    assert spec.rotation.every is None
    password = spec.data["p"].config
    assert (password.length, password.symbols) == (32, False)
    single = parse_spec(
        {
            "secretName": "s",
            "data": {
                "p": {
                    "postgresRole": {
                        "host": "h",
                        "adminSecret": {"name": "a"},
                        "role": "r",
                        "strategy": "single",
                    }
                }
            },
        }
    )
    assert single.data["p"].config.roles() == ("r",)


def with_(path: str, value: Any) -> dict[str, Any]:
    """FULL with the dotted *path* set to *value* (``None`` removes it)."""
    raw = copy.deepcopy(FULL)
    *parents, last = path.split("/")
    node = raw
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (with_("secretName", None), "spec.secretName: Field required"),
        (with_("secretName", "Shop_DB"), "spec: secretName must be a DNS-1123 subdomain"),
        (with_("type", "kubernetes.io/magic"), "spec.type: Input should be"),
        (
            with_("type", "kubernetes.io/ssh-auth"),
            "spec: type kubernetes.io/ssh-auth needs keys ssh-privatekey",
        ),
        (with_("data", {}), "spec.data: Dictionary should have at least 1 item"),
        (
            with_("data/bad key!", {"uuid": {}}),
            "spec: key 'bad key!' is not a valid Secret key",
        ),
        (with_("data/..", {"uuid": {}}), "spec: key '..' is not a valid Secret key"),
        (with_("data/..x", {"uuid": {}}), "spec: key '..x' is not a valid Secret key"),
        (
            {"secretName": "s", "data": {"k": {"sshKeypair": {"publicKeyKey": "no good"}}}},
            "spec: key 'no good' is not a valid Secret key",
        ),
        (
            {"secretName": "s", "type": "kubernetes.io/basic-auth", "data": {"t": {"uuid": {}}}},
            "spec: type kubernetes.io/basic-auth needs a username or password key",
        ),
        (with_("rotation/maxAge", "1ms"), "spec.rotation: maxAge must be at least 1m"),
        (with_("data/x", {}), "spec.data.x: choose exactly one generator"),
        (with_("data/x", {"uuid": {}, "token": {}}), "spec.data.x: choose exactly one generator"),
        (
            with_("data/x", {"password": {"length": 7}}),
            "spec.data.x.password.length: Input should be greater than or equal to 8",
        ),
        (
            with_("data/x", {"password": {"lower": False, "upper": False, "digits": False}}),
            "spec.data.x.password: choose at least one character class",
        ),
        (
            with_("data/x", {"password": {"lenght": 9}}),
            "spec.data.x.password.lenght: Extra inputs are not permitted",
        ),
        (
            with_("data/x", {"token": {"encoding": "base32"}}),
            "spec.data.x.token.encoding: Input should be",
        ),
        (
            with_("data/x", {"token": {"bytes": 8}}),
            "spec.data.x.token.bytes: Input should be greater than or equal to 16",
        ),
        (
            with_("data/x", {"sshKeypair": {"bits": 1024}}),
            "spec.data.x.sshKeypair.bits: Input should be greater than or equal to 2048",
        ),
        (
            with_("data/x", {"sshKeypair": {"algorithm": "dsa"}}),
            "spec.data.x.sshKeypair.algorithm: Input should be",
        ),
        (
            with_("data/tls.crt/x509/duration", "30m"),
            "spec.data.tls.crt.x509: duration must be at least 1h",
        ),
        (
            with_("data/tls.crt/x509/duration", "soon"),
            "spec.data.tls.crt.x509: 'soon' is not a duration",
        ),
        (
            with_("data/tls.crt/x509/renewBefore", "720h"),
            "spec.data.tls.crt.x509: renewBefore must be shorter than duration",
        ),
        (
            with_("data/tls.crt/x509/commonName", "c" * 65),
            "spec.data.tls.crt.x509.commonName: String should have at most 64 characters",
        ),
        (with_("data/tls.crt/x509/issuer", None), "spec.data.tls.crt.x509.issuer: Field required"),
        (
            with_("data/password/postgresRole/role", "Shop"),
            "spec.data.password.postgresRole.role: String should match pattern",
        ),
        (
            with_("data/password/postgresRole/port", 0),
            "spec.data.password.postgresRole.port: Input should be greater than or equal to 1",
        ),
        (
            with_("data/password/postgresRole/sslmode", "maybe"),
            "spec.data.password.postgresRole.sslmode: Input should be",
        ),
        (
            with_("data/password/postgresRole/password/length", 2),
            "spec.data.password.postgresRole.password.length: Input should be",
        ),
        (
            with_("data/pull/dockerConfig/usernameFrom", "instance"),
            "spec.data.pull.dockerConfig: give exactly one of username and usernameFrom",
        ),
        (
            with_("data/pull/dockerConfig/passwordFrom", None),
            "spec.data.pull.dockerConfig.passwordFrom: Field required",
        ),
        (
            with_("data/x", {"template": ""}),
            "spec.data.x.template: String should have at least 1 character",
        ),
        (
            with_("data/username", {"uuid": {}}),
            "spec: key 'username' is produced by two generators",
        ),
        (with_("rotation/every", "1d"), "spec.rotation: give every or schedule, not both"),
        (
            with_("rotation/schedule", "0 0 30 2 *"),
            "spec.rotation: schedule '0 0 30 2 *' never matches",
        ),
        (with_("rotation/schedule", "61 * * * *"), "spec.rotation: minute: 61 is outside 0-59"),
        (with_("rotation/maxAge", "3 days"), "spec.rotation: '3 days' is not a duration"),
        (
            with_("rotation/window/hours", "2-5"),
            "spec.rotation.window: window hours '2-5': use HH:MM-HH:MM (UTC)",
        ),
        (
            with_("rotation/window/days", ["Funday"]),
            "spec.rotation.window: window day 'Funday': use Mon, Tue, ... Sun",
        ),
        (with_("history/keep", 0), "spec.history.keep: Input should be greater than or equal to 1"),
        (
            with_("history/keep", 101),
            "spec.history.keep: Input should be less than or equal to 100",
        ),
        (with_("rollout/targets", []), "spec.rollout: strategy targets needs at least one target"),
        (
            with_("rollout/strategy", "auto"),
            "spec.rollout: targets are only read with strategy: targets",
        ),
        (
            with_("rollout/targets", [{"kind": "Job", "name": "x"}]),
            "spec.rollout.targets.0.kind: Input should be",
        ),
        (with_("rollout/timeout", "0.5s"), "spec.rollout: timeout must be at least 1s"),
        (
            with_("rollout/maxConcurrent", 0),
            "spec.rollout.maxConcurrent: Input should be greater than or equal to 1",
        ),
        (with_("extra", "yes"), "spec.extra: Extra inputs are not permitted"),
        ([], "spec: Input should be a valid dictionary"),
    ],
)
def test_invalid_specs_name_the_field(raw: Any, message: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, InputError)
    assert "\n" not in str(caught.value)


def test_every_must_be_at_least_a_minute() -> None:
    raw = {"secretName": "s", "data": {"p": {"password": {}}}, "rotation": {"every": "59s"}}
    with pytest.raises(InvalidSpecError, match=r"^spec\.rotation: every must be at least 1m$"):
        parse_spec(raw)
    raw["rotation"] = {"every": "1m"}
    assert parse_spec(raw).rotation.every == "1m"


def test_where_prefixes_the_field() -> None:
    with pytest.raises(InvalidSpecError, match=r"^shop/db\.spec\.history\.keep: "):
        parse_spec(with_("history/keep", 0), where="shop/db.spec")


# --------------------------------------------------------------------------- durations
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", dt.timedelta(seconds=45)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("90d", dt.timedelta(days=90)),
        ("2w", dt.timedelta(days=14)),
        ("1.5h", dt.timedelta(minutes=90)),
        ("250ms", dt.timedelta(milliseconds=250)),
        ("1d2h3m4s", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 12h ", dt.timedelta(hours=12)),
        ("3660d", MAX_DURATION),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "5",
        "h",
        "5y",
        "1h 30m",
        "-5m",
        "0s",
        "0d0h",
        "1e3s",
        "3661d",
        "99999999999999999999d",
        "9" * 400 + "s",
    ],
)
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidDurationError) as caught:
        parse_duration(text)
    assert isinstance(caught.value, ValueError)  # pydantic reports it as the field's error
    assert isinstance(caught.value, InputError)
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(days=90), "90d"),
        (dt.timedelta(hours=1, minutes=30), "1h30m"),
        (dt.timedelta(days=1, seconds=5), "1d5s"),
        (dt.timedelta(seconds=59.9), "59s"),
        (dt.timedelta(0), "0s"),
        (dt.timedelta(seconds=-5), "0s"),
    ],
)
def test_format_duration(value: dt.timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["1s", "59m", "25h", "8d", "1d1h1m1s", "2160h", "3650d"])
def test_format_parse_round_trip(text: str) -> None:
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


# --------------------------------------------------------------------------- cron
def at(text: str) -> dt.datetime:
    """``"2024-01-31 23:59"`` in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/15 * * * *", "2024-01-31 23:59:30", "2024-02-01 00:00"),
        ("*/15 * * * *", "2024-01-31 10:15", "2024-01-31 10:30"),  # strictly after
        ("5,35 * * * *", "2024-01-31 10:35", "2024-01-31 11:05"),
        ("0 9-17/4 * * MON-FRI", "2024-02-02 13:00", "2024-02-02 17:00"),  # 9, 13, 17
        ("0 9-17/4 * * MON-FRI", "2024-02-02 17:00", "2024-02-05 09:00"),  # Fri -> Mon
        ("30 2 1,15 * *", "2024-01-15 02:31", "2024-02-01 02:30"),
        ("10/20 * * * *", "2024-03-01 00:51", "2024-03-01 01:10"),  # 10, 30, 50
        ("0 12 * JAN,jul sun", "2024-01-31 00:00", "2024-07-07 12:00"),
        ("0 0 * * 7", "2024-01-31 00:00", "2024-02-04 00:00"),  # 7 is Sunday
        ("0 0 * * 0", "2024-01-31 00:00", "2024-02-04 00:00"),
        ("5 4 * * 5-7", "2024-02-03 04:05", "2024-02-04 04:05"),  # Fri, Sat, Sun
        ("@hourly", "2024-01-31 10:00", "2024-01-31 11:00"),
        ("@daily", "2024-01-31 10:00", "2024-02-01 00:00"),
        ("@weekly", "2024-01-31 10:00", "2024-02-04 00:00"),
        ("@monthly", "2024-01-31 10:00", "2024-02-01 00:00"),
        ("@YEARLY", "2024-01-31 10:00", "2025-01-01 00:00"),
        ("0 0 31 * *", "2024-01-31 00:00", "2024-03-31 00:00"),  # skips short months
        ("59 23 31 12 *", "2024-01-01 00:00", "2024-12-31 23:59"),
        ("0 0 29 2 *", "2024-01-01 00:00", "2024-02-29 00:00"),
        ("0 0 29 2 *", "2024-02-29 00:00", "2028-02-29 00:00"),
        # Both day fields restricted: either matches (the 13th, or any Friday).
        ("0 0 13 * FRI", "2024-01-31 00:00", "2024-02-02 00:00"),
        ("0 0 13 * FRI", "2024-02-09 00:00", "2024-02-13 00:00"),
        # Only one restricted: that one alone decides.
        ("0 0 13 * *", "2024-01-31 00:00", "2024-02-13 00:00"),
        ("0 0 * * FRI", "2024-02-02 00:00", "2024-02-09 00:00"),
    ],
)
def test_cron_next_after(schedule: str, after: str, expected: str) -> None:
    assert parse_cron(schedule).next_after(at(after)) == at(expected)


def test_cron_reads_other_time_zones_as_utc() -> None:
    minus_two = dt.timezone(dt.timedelta(hours=-2))
    moment = dt.datetime(2024, 1, 1, 23, 30, tzinfo=minus_two)  # 01:30 UTC on Jan 2
    result = parse_cron("0 0 * * *").next_after(moment)
    assert result == at("2024-01-03 00:00")
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("* * * *", "needs 5 fields"),
        ("* * * * * *", "needs 5 fields"),
        ("@reboot", "needs 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month: 0 is outside 1-31"),
        ("0 0 * 13 *", "month: 13 is outside 1-12"),
        ("0 0 * * 8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "minute: bad step '0'"),
        ("*/x * * * *", "minute: bad step 'x'"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("0 0 * FOO *", "month: 'FOO' is not a number"),
        ("0 0 * * MON,,TUE", "day of week: '' is not a number"),
    ],
)
def test_bad_cron_is_refused(schedule: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        parse_cron(schedule)


# --------------------------------------------------------------------------- windows
def test_window_plain_hours_and_days() -> None:
    window = parse_window("02:00-05:00", ["Sat", "sunday"])
    assert window.is_open(at("2024-02-03 02:00"))  # Saturday
    assert window.is_open(at("2024-02-04 04:59"))  # Sunday
    assert not window.is_open(at("2024-02-04 05:00"))  # end is exclusive
    assert not window.is_open(at("2024-02-05 03:00"))  # Monday
    assert window.next_open(at("2024-02-05 03:00")) == at("2024-02-10 02:00")
    moment = at("2024-02-03 03:17:42")
    assert window.next_open(moment) == moment  # open now: now


def test_window_wrapping_past_midnight_belongs_to_its_first_day() -> None:
    window = parse_window("22:00-02:00", ["Fri"])
    assert not window.is_open(at("2024-02-02 21:59"))  # Friday, before
    assert window.is_open(at("2024-02-02 22:00"))  # Friday night
    assert window.is_open(at("2024-02-03 01:59"))  # Saturday small hours: Friday's window
    assert not window.is_open(at("2024-02-03 02:00"))
    assert not window.is_open(at("2024-02-02 01:00"))  # Friday small hours: Thursday's
    assert window.next_open(at("2024-02-02 01:00")) == at("2024-02-02 22:00")
    assert window.next_open(at("2024-02-03 02:00")) == at("2024-02-09 22:00")


def test_window_whole_days_and_always() -> None:
    weekend = parse_window("00:00-24:00", ["Sat"])
    assert weekend.is_open(at("2024-02-03 23:59"))
    assert weekend.next_open(at("2024-02-02 13:07")) == at("2024-02-03 00:00")
    days_only = parse_window(None, ["Mon"])
    assert days_only.next_open(at("2024-02-04 12:00")) == at("2024-02-05 00:00")
    always = parse_window(None)
    moment = at("2024-02-04 12:34:56")
    assert always.next_open(moment) == moment


@pytest.mark.parametrize(
    ("hours", "days", "message"),
    [
        ("2-5", (), "use HH:MM-HH:MM"),
        ("02:00-05:00:00", (), "use HH:MM-HH:MM"),
        ("24:00-02:00", (), "not a time of day"),
        ("02:60-05:00", (), "not a time of day"),
        ("02:00-24:30", (), "not a time of day"),
        ("03:00-03:00", (), "is empty"),
        (None, ("Mo",), "window day 'Mo'"),
        (None, ("",), "window day ''"),
    ],
)
def test_bad_windows_are_refused(hours: str | None, days: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        parse_window(hours, days)
