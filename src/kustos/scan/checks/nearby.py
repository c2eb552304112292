"""Which objects of a file scan belong together: the folder rule shared by context checks.

Purely data. A folder of manifests is often many projects side by side (examples, docs
snippets, several charts rendered into one tree); objects without a namespace all land in
``default`` and would meet each other there although no cluster ever holds them together.
Checks whose finding depends on *another* object (a Secret nobody uses, a default
ServiceAccount that some binding grants something) only pair objects that are near: in the
same folder, or one in a folder below the other's. A live cluster has no folders: there,
everything is near.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import PurePath

from kustos.kube.objects import KubeObject


def folder_of(obj: KubeObject) -> PurePath | None:
    """The folder an object was read from; ``None`` for live objects and stdin."""
    place = _place(obj)
    return place[0] if place is not None else None


def near(a: KubeObject, b: KubeObject) -> bool:
    """Tell whether two objects can be judged together (see the module docstring)."""
    pa, pb = _place(a), _place(b)
    if pa is None or pb is None:
        return True
    return pa[0] == pb[0] or pa[0] in pb[1] or pb[0] in pa[1]


def within(home: KubeObject, other: KubeObject) -> bool:
    """Tell whether *other* sits in *home*'s folder or below it (a live cluster: always)."""
    ph, po = _place(home), _place(other)
    if ph is None or po is None:
        return True
    return po[0] == ph[0] or ph[0] in po[1]


def _place(obj: KubeObject) -> tuple[PurePath, frozenset[PurePath]] | None:
    if obj.source is None or not obj.source.file or obj.source.file == "-":
        return None
    return _folder(obj.source.file)


@lru_cache(maxsize=16384)
def _folder(file: str) -> tuple[PurePath, frozenset[PurePath]]:
    """A file's folder and every folder above it.

    A pure function of the name, remembered: the checks ask it of the same few hundred
    files tens of thousands of times in a large scan, and parsing a path is most of the
    cost of :func:`near`.
    """
    folder = PurePath(file).parent
    return folder, frozenset(folder.parents)
