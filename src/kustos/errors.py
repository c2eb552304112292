"""The one error tree of Kustos.

Every failure Kustos reports to a user is a :class:`KustosError`. Adapters catch the
exceptions of the libraries they wrap (PyYAML, lightkube, httpx, subprocess, ...) once and
re-raise one of these with ``raise ... from exc``; nothing above an adapter sees a foreign
exception. Messages name things (``namespace/name``, ``file:line``, a key id), never a
secret value: ``str(error)`` is safe to print, log and put in an event.

    KustosError
    ├── UsageError                  bad flags or arguments (exit code 2)
    ├── InputError                  input Kustos was given cannot be used (exit code 2)
    │   └── DocumentError           one malformed YAML/JSON document (file and line)
    ├── ConfigError                 a settings file or environment variable is wrong
    ├── KubeError                   talking to the Kubernetes API failed
    │   ├── KubeConnectionError     no API server answered
    │   ├── KubeNotFoundError       the object does not exist
    │   └── RolloutError            a rollout did not complete
    └── ControlPlaneError           the local control plane could not be built or run
        └── BinaryMissingError      a control-plane binary is not in the cache
"""

from __future__ import annotations

#: Foreign payloads quoted in messages are cut to this many characters (kopf does the same).
MAX_QUOTED = 256


def quote_foreign(text: str, limit: int = MAX_QUOTED) -> str:
    """Return *text* on one line, cut to *limit* characters, for quoting inside a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class KustosError(Exception):
    """Root of every error Kustos raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


class UsageError(KustosError):
    """The command line was wrong."""

    exit_code = 2


class InputError(KustosError):
    """Input given to Kustos (files, stdin, manifests) cannot be used."""

    exit_code = 2


class DocumentError(InputError):
    """One document of a YAML/JSON stream is malformed; the others may still load."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


class ConfigError(KustosError):
    """A settings file or ``KUSTOS_*`` environment variable is wrong."""

    exit_code = 2


class KubeError(KustosError):
    """The Kubernetes API could not do what was asked."""


class KubeConnectionError(KubeError):
    """No API server answered at the configured address."""


class KubeNotFoundError(KubeError):
    """The object asked for does not exist."""


class RolloutError(KubeError):
    """A workload's rollout did not complete in time or failed."""


class ControlPlaneError(KustosError):
    """The local control plane could not be built, started or stopped."""


class BinaryMissingError(ControlPlaneError):
    """A control-plane binary is not where the cache says it should be."""
