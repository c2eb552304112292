"""The one error tree of Kustos.

Every failure Kustos reports to a user is a :class:`KustosError`. Adapters catch the
exceptions of the libraries they wrap (PyYAML, lightkube, httpx, subprocess, ...) once and
re-raise one of these with ``raise ... from exc``; nothing above an adapter sees a foreign
exception. Messages name things (``namespace/name``, ``file:line``, a key id), never a
secret value: ``str(error)`` is safe to print, log and put in an event.

    KustosError
    ├── UsageError                  bad flags or arguments (exit code 2)
    ├── InputError                  input Kustos was given cannot be used (exit code 2)
    │   ├── DocumentError           one malformed YAML/JSON document (file and line)
    │   │   └── UnreadableInputError  a manifest file that cannot be read as text
    │   ├── InvalidSpecError        a resource's spec (ManagedSecret, ...) cannot be used
    │   └── FileAccessError         a file cannot be read or written (names the path)
    │       └── FileMissingError    the file does not exist
    ├── ConfigError                 a settings file or environment variable is wrong
    ├── KubeError                   the Kubernetes API failed (5xx, ...) (exit code 3)
    │   ├── KubeConnectionError     no API server answered (exit code 3)
    │   ├── KubeAuthError           401/403: credentials refused or verb not allowed (2)
    │   ├── KubeNotFoundError       the object named does not exist (2)
    │   ├── KubeConflictError       409: changed or created meanwhile (3)
    │   ├── KubeInvalidError        422: the API server rejected the object (2)
    │   └── RolloutError            a rollout did not complete (1)
    ├── KmsError                    the KMS plugin or its key store failed
    │   └── ContractError           a KMS v2 request broke the protocol contract
    ├── ServiceError                a long-running service cannot start (bind, key store, peer)
    ├── DatabaseError               a database refused a credential change or is unreachable
    ├── StoreError                  a secrets manager (Vault, AWS Secrets Manager) refused
    │   ├── StoreNotFoundError      the path, key or version does not exist (2)
    │   ├── StoreAuthError          login refused, or a path the policy denies (2)
    │   ├── StoreConflictError      check-and-set: the store changed meanwhile
    │   └── StoreUnavailableError   the store did not answer or failed (3)
    ├── BackupError                 a backup cannot be opened or does not verify (exit 1)
    │   └── RestoreConflictError    ``--conflict fail`` met an object that exists (exit 1)
    ├── ControlPlaneError           the local control plane could not be built or run
    │   └── BinaryMissingError      a control-plane binary is not in the cache
    ├── ArchiveError                the audit archive cannot be read, written or locked
    │   └── ArchiveFullError        no room for a batch now (disk full, overload): retry later
    └── SinkError                   a forwarding sink is unreachable or refused a batch

Exit codes (``exit_code``): 0 success; 1 only for the command's own documented result
(findings at or above ``--fail-on``, a rollout that failed and was rolled back, a failed
verification) and failures of Kustos's own components (KMS, database); 2 usage and input
errors, including credentials or objects the user named that the API refuses or does not
have; 3 the Kubernetes API server could not be reached or failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

#: Foreign payloads quoted in messages are cut to this many characters (kopf does the same).
MAX_QUOTED = 256


def quote_foreign(text: str, limit: int = MAX_QUOTED) -> str:
    """Return *text* on one line, cut to *limit* characters, for quoting inside a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """Where and why pydantic refused a value: the dotted location of its first problem
    (empty for the document itself) and its reason, never the offending value."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return where, first["msg"].removeprefix("Value error, ")


class KustosError(Exception):
    """Root of every error Kustos raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


class UsageError(KustosError):
    """The command line was wrong."""

    exit_code = 2


class InputError(KustosError):
    """Input given to Kustos (files, stdin, manifests) cannot be used."""

    exit_code = 2


class FileAccessError(InputError):
    """A file cannot be read or written; the message names the path and the reason."""

    def __init__(self, path: object, action: str, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: cannot {action}: {reason}")


class FileMissingError(FileAccessError):
    """The file does not exist (told apart so nobody is sent hunting for a wrong key)."""


class InvalidSpecError(InputError):
    """A resource's spec cannot be used; the message names the field."""


class DocumentError(InputError):
    """One document of a YAML/JSON stream is malformed; the others may still load."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class UnreadableInputError(DocumentError):
    """A manifest file that could not be read as text: missing, unreadable, binary.

    ``named`` is true for a path the user gave (a file, ``-``), false for a file found by
    walking a named folder. ``str()`` is ``"<path>: <reason>"``, as for any
    ``DocumentError``; ``line`` is ``None``.
    """

    def __init__(self, source: str, reason: str, *, named: bool) -> None:
        super().__init__(source, None, reason)
        self.named = named


class ConfigError(KustosError):
    """A settings file or ``KUSTOS_*`` environment variable is wrong."""

    exit_code = 2


class KubeError(KustosError):
    """The Kubernetes API could not do what was asked."""

    exit_code = 3


class KubeConnectionError(KubeError):
    """No API server answered at the configured address."""

    exit_code = 3


class KubeAuthError(KubeError):
    """The API server refused the credentials (401) or the verb on the resource (403)."""

    exit_code = 2


class KubeConflictError(KubeError):
    """The object changed or appeared meanwhile (409)."""


class KubeInvalidError(KubeError):
    """The API server rejected the object as invalid (422)."""

    exit_code = 2


class KubeNotFoundError(KubeError):
    """The object asked for does not exist."""

    exit_code = 2


class RolloutError(KubeError):
    """A workload's rollout did not complete in time or failed."""

    exit_code = 1


class KmsError(KustosError):
    """The KMS plugin, a key provider or a key store failed."""


class ContractError(KmsError):
    """A KMS v2 request or stored value breaks the protocol's contract."""


class ServiceError(KustosError):
    """A long-running service cannot start: it cannot bind, open its store or reach a peer."""


class DatabaseError(KustosError):
    """A database (PostgreSQL for ``postgresRole``) is unreachable or refused a change."""


class StoreError(KustosError):
    """A secrets manager refused a request (credentials, permissions, bad data)."""


class StoreNotFoundError(StoreError):
    """The secret, key or version asked for does not exist in the store."""

    exit_code = 2


class StoreAuthError(StoreError):
    """The store refused the login, or its policy refuses the path to a valid token."""

    exit_code = 2


class StoreConflictError(StoreError):
    """A check-and-set write lost: the store's value changed meanwhile."""


class StoreUnavailableError(StoreError):
    """The store did not answer, timed out or failed (5xx): retry later."""

    exit_code = 3


class BackupError(KustosError):
    """A backup file cannot be opened (key, passphrase, damage) or does not verify."""

    exit_code = 1


class RestoreConflictError(BackupError):
    """A restore with ``--conflict fail`` found objects that already exist and differ."""


class ControlPlaneError(KustosError):
    """The local control plane could not be built, started or stopped."""


class BinaryMissingError(ControlPlaneError):
    """A control-plane binary is not where the cache says it should be."""


class ArchiveError(KustosError):
    """The audit archive cannot be opened, read or written (names the file, never a value)."""


class ArchiveFullError(ArchiveError):
    """A batch cannot be stored now (no space left, or too many batches waiting): retry."""


class SinkError(KustosError):
    """A forwarding sink (syslog, webhook, Splunk, Elasticsearch, Loki) failed a delivery.

    ``retryable`` says whether the same records may succeed later (unreachable, 429, 5xx)
    or were refused for good (400, 401, 403, 413). The message names the sink and the
    status, and quotes at most :data:`MAX_QUOTED` characters of the sink's answer.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
