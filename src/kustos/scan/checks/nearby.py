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

from pathlib import PurePath

from kustos.kube.objects import KubeObject


def folder_of(obj: KubeObject) -> PurePath | None:
    """The folder an object was read from; ``None`` for live objects and stdin."""
    if obj.source is None or not obj.source.file or obj.source.file == "-":
        return None
    return PurePath(obj.source.file).parent


def near(a: KubeObject, b: KubeObject) -> bool:
    """Tell whether two objects can be judged together (see the module docstring)."""
    fa, fb = folder_of(a), folder_of(b)
    if fa is None or fb is None:
        return True
    return fa == fb or fa in fb.parents or fb in fa.parents


def within(home: KubeObject, other: KubeObject) -> bool:
    """Tell whether *other* sits in *home*'s folder or below it (a live cluster: always)."""
    fh, fo = folder_of(home), folder_of(other)
    if fh is None or fo is None:
        return True
    return fo == fh or fh in fo.parents
