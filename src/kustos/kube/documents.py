"""YAML and JSON text → ``KubeObject`` values, with file and line, bad documents reported.

Purely data: this module reads no file; :mod:`kustos.kube.loading` feeds it text.

A stream is split on its document markers (``---`` / ``...`` at column 0) *before* it is
parsed, so that one malformed document is reported with its file and line and skipped
while every other document of the same file still loads. PyYAML's C parser (libyaml) does
the parsing when it is available, which keeps a 50k-object scan fast.

On the way in, every value of a Secret (``data``, ``stringData`` and the
``last-applied-configuration`` annotation that ``kubectl apply`` leaves behind, which holds
the values in clear) is wrapped in :class:`~kustos.sensitive.Sensitive`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson
import yaml

from kustos.errors import DocumentError, InputError
from kustos.kube.objects import KubeObject, Source, api_group, is_namespaced
from kustos.sensitive import Sensitive

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Composer: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MARKER: Final = re.compile(r"^(?:---|\.\.\.)(?=[ \t]|$)", re.MULTILINE)
_LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One document's text and the 1-based line it starts on."""

    text: str
    line: int
    index: int


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a stream held: its objects, its malformed documents, and how many were not objects."""

    objects: tuple[KubeObject, ...]
    errors: tuple[DocumentError, ...]
    skipped: int


#: A document whose aliases would expand to more nodes than this is refused ("billion
#: laughs"). A 50,000-object List without aliases is about 2 million nodes; aliases in real
#: manifests add a few. The limit bounds time and memory, whatever the input.
MAX_EXPANDED_NODES: Final = 5_000_000

_STR: Final = "tag:yaml.org,2002:str"
_MAP: Final = "tag:yaml.org,2002:map"
_SEQ: Final = "tag:yaml.org,2002:seq"


def load_yaml(text: str) -> Any:
    """Load one YAML document like ``yaml.safe_load``, faster for Kubernetes manifests.

    libyaml composes the node tree; plain string scalars, string-keyed mappings and
    sequences (nearly all of a manifest) are then built here directly, and everything else
    (ints, booleans, timestamps, merge keys, ...) goes through PyYAML's own safe
    constructor, so the result is the same as ``yaml.safe_load`` (a unit test holds the
    whole corpus to that).

    A document whose aliases expand beyond :data:`MAX_EXPANDED_NODES` raises
    ``InputError`` after composing the node graph (linear in the text), before anything is
    built from it.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "*" in text:  # no alias can exist without its '*'
            _check_expansion(node)
        return _construct(loader, node)
    finally:
        loader.dispose()


def load_yaml_all(text: str, source: str) -> list[Any]:
    """Every non-empty document of *text* (config files); ``DocumentError`` at the first bad one."""
    out = []
    for chunk in split_documents(text):
        try:
            value = load_yaml(chunk.text)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, source, chunk) from None
        except InputError as exc:
            raise DocumentError(source, chunk.line, str(exc)) from None
        if value is not None:
            out.append(value)
    return out


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose tree (aliases expanded) exceeds the limit; linear time."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        # A child still missing here is an ancestor: a recursive alias, refused by size.
        total = 1 + sum(sizes.get(id(c), MAX_EXPANDED_NODES) for c in children)
        if total > MAX_EXPANDED_NODES:
            raise InputError(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes "
                "(an alias bomb?); refused"
            )
        sizes[key] = total


def _construct(loader: Any, node: yaml.Node) -> Any:
    kind = type(node)
    if kind is yaml.ScalarNode:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    if kind is yaml.MappingNode and node.tag == _MAP:
        out: dict[Any, Any] = {}
        for key, value in node.value:
            if type(key) is not yaml.ScalarNode or key.tag != _STR:
                return loader.construct_object(node, deep=True)  # merge keys, odd keys
            out[key.value] = _construct(loader, value)
        return out
    if kind is yaml.SequenceNode and node.tag == _SEQ:
        return [_construct(loader, item) for item in node.value]
    return loader.construct_object(node, deep=True)


def split_documents(text: str) -> Iterator[Chunk]:
    """Yield each document of a YAML stream with its starting line, empty ones dropped."""
    starts = [m.start() for m in _MARKER.finditer(text)]
    bounds = [0, *starts, len(text)] if not starts or starts[0] != 0 else [*starts, len(text)]
    line = 1
    index = 0
    previous = 0
    for start, end in itertools.pairwise(bounds):
        line += text.count("\n", previous, start)
        previous = start
        chunk = text[start:end]
        body = chunk
        if body.startswith(("---", "...")):
            body = body[3:]
        if body.strip() and not _only_comments(body):
            yield Chunk(chunk, line, index)
            index += 1


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())


def parse_stream(text: str, source: str, *, default_namespace: str = "default") -> ParseResult:
    """Parse a YAML (or JSON) stream into objects; never raises for a bad document."""
    objects: list[KubeObject] = []
    errors: list[DocumentError] = []
    skipped = 0
    stripped = text.lstrip()
    if source.endswith(".json") or (stripped.startswith(("{", "[")) and _looks_json(stripped)):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            errors.append(DocumentError(source, getattr(exc, "lineno", None), "invalid JSON"))
            return ParseResult((), tuple(errors), 0)
        docs: list[tuple[Any, int, int]] = [(value, 1, 0)]
        if isinstance(value, list):
            docs = [(item, 1, i) for i, item in enumerate(value)]
    else:
        docs = []
        for chunk in split_documents(text):
            try:
                docs.append((load_yaml(chunk.text), chunk.line, chunk.index))
            except yaml.YAMLError as exc:
                errors.append(_yaml_error(exc, source, chunk))
            except InputError as exc:
                errors.append(DocumentError(source, chunk.line, str(exc)))
    for value, line, index in docs:
        found, bad, not_object = _objects_of(
            value, Source(source, line, index), default_namespace=default_namespace
        )
        objects.extend(found)
        errors.extend(bad)
        skipped += not_object
    return ParseResult(tuple(objects), tuple(errors), skipped)


def _looks_json(text: str) -> bool:
    # A YAML flow mapping also starts with "{": only treat it as JSON if it parses as JSON.
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _yaml_error(exc: yaml.YAMLError, source: str, chunk: Chunk) -> DocumentError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = chunk.line + mark.line if mark is not None else chunk.line
    # libyaml often notices a problem at the end of the document; stay inside it.
    line = min(line, chunk.line + chunk.text.rstrip("\n").count("\n"))
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return DocumentError(source, line, f"invalid YAML: {problem}")


def _objects_of(
    value: Any, source: Source, *, default_namespace: str
) -> tuple[list[KubeObject], list[DocumentError], int]:
    if (
        not isinstance(value, Mapping)
        or "kind" not in value
        or "apiVersion" not in value
        or ("metadata" not in value and "items" not in value)
    ):
        # Not an object stored in a cluster: plain data, a Kustomization, an
        # AdmissionReview, an EncryptionConfiguration...
        return [], [], 1
    kind = value.get("kind")
    items = value.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        objects: list[KubeObject] = []
        errors: list[DocumentError] = []
        skipped = 0
        for i, item in enumerate(items):
            item_source = Source(source.file, source.line, source.document, f"items[{i}]")
            found, bad, not_object = _objects_of(
                item, item_source, default_namespace=default_namespace
            )
            objects.extend(found)
            errors.extend(bad)
            skipped += not_object
        return objects, errors, skipped
    try:
        return [to_object(value, source, default_namespace=default_namespace)], [], 0
    except DocumentError as exc:
        return [], [exc], 0


def to_object(
    value: Mapping[str, Any], source: Source | None, *, default_namespace: str = "default"
) -> KubeObject:
    """Make a ``KubeObject`` from one manifest mapping; raise ``DocumentError`` if unusable."""
    where = source.file if source else "<object>"
    line = source.line if source else None
    api_version = value.get("apiVersion")
    kind = value.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        raise DocumentError(where, line, "apiVersion and kind must be strings")
    meta = value.get("metadata")
    if not isinstance(meta, Mapping):
        raise DocumentError(where, line, f"{kind} has no metadata")
    name = meta.get("name") or meta.get("generateName")
    if not isinstance(name, str) or not name:
        raise DocumentError(where, line, f"{kind} has no metadata.name")
    namespace = ""
    if is_namespaced(kind):
        ns = meta.get("namespace")
        namespace = ns if isinstance(ns, str) and ns else default_namespace
    body = value
    if kind == "Secret" and api_group(api_version) == "":
        body = protect_secret_body(value)
    return KubeObject(api_version, kind, namespace, name, body, source)


def protect_secret_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a Secret's body with every value wrapped in ``Sensitive``."""
    out = dict(body)
    data = body.get("data")
    if isinstance(data, Mapping):
        out["data"] = {str(k): _decoded(v) for k, v in data.items()}
    string_data = body.get("stringData")
    if isinstance(string_data, Mapping):
        out["stringData"] = {str(k): Sensitive(str(v)) for k, v in string_data.items()}
    meta = body.get("metadata")
    if isinstance(meta, Mapping):
        annotations = meta.get("annotations")
        if isinstance(annotations, Mapping) and _LAST_APPLIED in annotations:
            protected = dict(annotations)
            protected[_LAST_APPLIED] = Sensitive(str(annotations[_LAST_APPLIED]))
            out["metadata"] = {**meta, "annotations": protected}
    return out


def _decoded(value: Any) -> Sensitive:
    if isinstance(value, Sensitive):
        return value
    if value is None:
        return Sensitive(b"")
    raw = value if isinstance(value, bytes) else str(value).encode()
    try:
        return Sensitive(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError):
        # Not valid base64: the API server would refuse it. Keep the bytes, still hidden.
        return Sensitive(raw)


# --------------------------------------------------------------------------- locating fields

_SEGMENT: Final = re.compile(r'([^.\[\]]+)|\[(\d+)\]|\["([^"]*)"\]')


def parse_path(path: str) -> list[str | int]:
    """Split ``spec.containers[0].env[3]`` or ``metadata.annotations["a.b/c"]`` into steps."""
    steps: list[str | int] = []
    for name, idx, quoted in _SEGMENT.findall(path):
        if idx:
            steps.append(int(idx))
        elif quoted:
            steps.append(quoted)
        elif name:
            steps.append(name)
    return steps


_KEY: Final = re.compile(r"""^(?:"([^"]*)"|'([^']*)'|([^\s#'"{\[][^:#]*?))\s*:(?:\s|$)""")


def _key_of(text: str) -> str | None:
    match = _KEY.match(text)
    if match is None:
        return None
    return next(g for g in match.groups() if g is not None)


_Row = tuple[int, int, str]


@lru_cache(maxsize=256)
def _rows(document_text: str) -> tuple[_Row, ...]:
    """(line index, indentation, content) of every line that holds YAML content."""
    rows = []
    for number, raw in enumerate(document_text.split("\n")):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            rows.append((number, len(raw) - len(raw.lstrip(" ")), stripped))
    return tuple(rows)


#: ``None`` for "shape not followed, compose instead"; else (window below, line found, done).
_Walk = tuple[tuple[_Row, ...], int, bool] | None


@lru_cache(maxsize=8192)
def _walk(document_text: str, steps: tuple[str | int, ...]) -> _Walk:
    """Follow *steps* through the rows; memoised so that sibling fields share the walk."""
    if not steps:
        rows = _rows(document_text)
        return (rows, rows[0][0], False) if rows else None
    parent = _walk(document_text, steps[:-1])
    if parent is None:
        return None
    window, found, done = parent
    if done or not window:
        return ((), found, True)
    step = steps[-1]
    base = window[0][1]
    if isinstance(step, int):
        items = [i for i, r in enumerate(window) if r[1] == base and r[2].startswith("-")]
        if step >= len(items):
            return ((), found, True)
        start = items[step]
        number, indent, text = window[start]
        rest = text[1:].lstrip(" ")
        offset = indent + (len(text) - len(rest))
        end = items[step + 1] if step + 1 < len(items) else len(window)
        below = tuple(r for r in window[start + 1 : end] if r[1] > base)
        return (((number, offset, rest), *below) if rest else below, number, False)
    for i, (number, indent, text) in enumerate(window):
        if indent == base and _key_of(text) == step:
            value = text.split(":", 1)[1].strip() if ":" in text else ""
            if value.startswith(("{", "[", "&", "*", "!")):
                return None
            tail: list[_Row] = []
            for row in window[i + 1 :]:
                if row[1] > base or (row[1] == base and row[2].startswith("-")):
                    tail.append(row)
                else:
                    break
            return (tuple(tail), number, False)
    if window[0][2].startswith(("{", "[")):
        return None
    return ((), found, True)


def fast_line_of(document_text: str, first_line: int, path: str) -> int | None:
    """Find *path* in block-style YAML by indentation alone, without building a node tree.

    Handles block mappings and block sequences (including ``- key: value`` items and
    sequences indented at their parent key's level); a missing part gives the line of the
    deepest part found. Returns ``None`` when the document uses a shape it does not follow
    (flow collections, anchors, tags on the way), and the caller composes the document.
    """
    walked = _walk(document_text, tuple(parse_path(path)))
    return None if walked is None else first_line + walked[1]


def line_of(document_text: str, first_line: int, path: str) -> int:
    """Return the 1-based line of *path* inside one document; the deepest found part wins."""
    fast = fast_line_of(document_text, first_line, path)
    if fast is not None:
        return fast
    try:
        node = yaml.compose(document_text, Loader=_Composer)
    except yaml.YAMLError:
        return first_line
    if node is None:
        return first_line
    best = node.start_mark.line
    for step in parse_path(path):
        child = _child(node, step)
        if child is None:
            break
        node, best = child
    return first_line + best


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, int] | None:
    if isinstance(step, int) and isinstance(node, yaml.SequenceNode):
        if 0 <= step < len(node.value):
            item = node.value[step]
            return item, item.start_mark.line
        return None
    if isinstance(node, yaml.MappingNode):
        for key, val in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return val, key.start_mark.line
    return None
