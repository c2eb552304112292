"""Where the control-plane binaries are: the versioned cache that ``build.sh`` fills.

The cache key is made of the pinned versions in ``data/controlplane-versions.env`` (read by
``tools/controlplane/build.sh`` too, so the two never disagree). ``KUSTOS_CONTROLPLANE_BIN``
points at another folder of binaries; ``KUSTOS_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from kustos.errors import BinaryMissingError

BINARIES: Final = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


@dataclass(frozen=True, slots=True)
class Versions:
    """The pinned versions of the control plane."""

    kubernetes: str
    etcd: str
    kwok: str

    @property
    def cache_key(self) -> str:
        """The folder name of this set of versions in the cache."""
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"


def pinned_versions() -> Versions:
    """Read the pinned versions shipped with the package."""
    text = resources.files("kustos.testing").joinpath("data/controlplane-versions.env").read_text()
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return Versions(values["KUBERNETES_VERSION"], values["ETCD_VERSION"], values["KWOK_VERSION"])


def cache_root() -> Path:
    """The Kustos cache folder (``~/.cache/kustos`` unless overridden)."""
    explicit = os.environ.get("KUSTOS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kustos"


def bin_dir() -> Path:
    """The folder that holds (or will hold) the binaries of the pinned versions."""
    explicit = os.environ.get("KUSTOS_CONTROLPLANE_BIN")
    if explicit:
        return Path(explicit)
    return cache_root() / "controlplane" / pinned_versions().cache_key / "bin"


def require_binaries(directory: Path | None = None) -> Path:
    """Return the binary folder, or raise ``BinaryMissingError`` naming what is missing."""
    directory = directory or bin_dir()
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if missing:
        raise BinaryMissingError(
            f"control-plane binaries missing in {directory}: {', '.join(missing)}; "
            "build them with `make controlplane` (tools/controlplane/build.sh)"
        )
    return directory
