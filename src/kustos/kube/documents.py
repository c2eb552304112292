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

import array
import base64
import binascii
import itertools
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson
import yaml

from kustos.errors import DocumentError, InputError
from kustos.kube.objects import KubeObject, Source, api_group, is_namespaced
from kustos.sensitive import Sensitive

_Composer: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: First characters of plain scalars that some implicit resolver (bool, int, float, null,
#: timestamp, merge, value) may claim; any other plain scalar is a string.
_RESOLVABLE: Final = frozenset(k for k in _Composer.yaml_implicit_resolvers if k is not None)
#: Plain scalars up to this length have their tag remembered (keys, booleans, numbers), up
#: to this many of them (then forgotten at once: names may be short and all different).
_REMEMBERED_LENGTH: Final = 32
_REMEMBERED: Final = 10_000


class _FastLoader(_Composer):  # type: ignore[misc]  # PyYAML's loaders are untyped
    """libyaml's safe loader, resolving plain scalars' tags with fewer regular expressions.

    PyYAML tries the implicit resolvers of a scalar's first character, in Python, for every
    plain scalar libyaml meets: about a quarter of a large scan's parse (measured on the
    bench's 100k set). The tag of a plain scalar depends on its text alone (a safe loader
    has no path resolvers), so a first character no resolver claims means a string, and
    the tags of short scalars (keys, ``true``, ``80``) are remembered, a few hundred of
    them. Every other case goes to PyYAML's own ``resolve``: the same tags, the same values
    (``tests/unit/kube/test_yaml_values.py`` compares them with ``yaml.safe_load``).
    """

    _tags: ClassVar[dict[str, str]] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """The tag of a node, as PyYAML's ``resolve`` gives it."""
        if kind is yaml.ScalarNode and implicit[0]:
            if value and value[0] not in _RESOLVABLE:
                return _STR
            if len(value) <= _REMEMBERED_LENGTH:
                tags = self._tags
                tag = tags.get(value)
                if tag is None:
                    if len(tags) >= _REMEMBERED:
                        tags.clear()
                    tag = tags[value] = super().resolve(kind, value, implicit)
                return tag
        return super().resolve(kind, value, implicit)


# Resolvers for any first character, or by path, would make the shortcut wrong: PyYAML's way.
_PLAIN_BY_TEXT: Final = None not in _Composer.yaml_implicit_resolvers
_Loader: Any = _FastLoader if _PLAIN_BY_TEXT and not _Composer.yaml_path_resolvers else _Composer

_MARKER: Final = re.compile(r"^(?:---|\.\.\.)(?=[ \t]|$)", re.MULTILINE)
_LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One document's text and the 1-based line it starts on."""

    text: str
    line: int
    index: int


#: Why a document that was read is not an object to check (keys of ``ParseResult.skipped_by``).
SKIP_NO_TYPE: Final = "without apiVersion/kind"
SKIP_KUSTOMIZATION: Final = "Kustomization"
SKIP_ADMISSION_REVIEW: Final = "AdmissionReview"
SKIP_NO_METADATA: Final = "without metadata (configuration files)"
_KUSTOMIZATION_FILES: Final = frozenset(
    {"kustomization.yaml", "kustomization.yml", "Kustomization"}
)


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a stream held: its objects, its malformed documents, and how many were not objects."""

    objects: tuple[KubeObject, ...]
    errors: tuple[DocumentError, ...]
    skipped: int
    #: The documents that were not objects, counted by reason (``SKIP_*``).
    skipped_by: Mapping[str, int] = field(default_factory=dict)
    #: Documents read (objects, Lists, skipped ones and malformed ones alike).
    documents: int = 0


#: The lines of one document's fields, recorded while it is built: the first content
#: row, then per field in document order (keys and sequence items, depth first) its key
#: (``None`` for a sequence item) and, in ``marks`` (unsigned, 16-bit unless a number
#: needs 32), its row and the number of fields below it. Plain values, so that a parsing
#: process sends them back cheaply.
RecordedLines = tuple[int, tuple[str | None, ...], bytes]
_SMALL_MARKS: Final = "H"
_LARGE_MARKS: Final = "I"
_QUOTED: Final = frozenset({"'", '"'})


@dataclass(frozen=True, slots=True)
class RawDocuments:
    """A stream's documents as parsed, before they become objects: plain, picklable values.

    This is what a parsing process sends back to the one that builds the index (so it holds
    no ``Sensitive``: Secret values are wrapped when objects are made, in that process).
    ``docs`` holds (value, first line, document index); ``errors`` (line, reason).
    """

    docs: list[tuple[Any, int, int]]
    errors: list[tuple[int | None, str]]
    #: The recorded lines of each of ``docs`` (:func:`recorded_line`), ``None`` where the
    #: document was not recorded (JSON, shapes the record does not promise to get right).
    lines: list[RecordedLines | None] = field(default_factory=list)


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


def load_yaml_recorded(text: str) -> tuple[Any, RecordedLines | None]:
    """:func:`load_yaml`, and the lines of the document's fields (``None`` if not recorded).

    The same value as :func:`load_yaml`; the lines come from the composed nodes, read as
    the value is built (:class:`_Recording`), for :func:`recorded_line` to look up later.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        if "*" in text:
            _check_expansion(node)
        if not _recordable(text) or node.start_mark.column:
            # An indented root: the walk's base could be a comment on the "---" row.
            return _construct(loader, node), None
        recording = _Recording(loader, text)
        value = recording.build(node)
        return value, recording.lines(text)
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


#: Keys repeat across every object (``metadata``, ``name``...): one string each saves memory.
_intern: Final = sys.intern


def _construct(loader: Any, node: yaml.Node) -> Any:
    kind = type(node)
    if kind is yaml.ScalarNode:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    if kind is yaml.MappingNode and node.tag == _MAP:
        out: dict[Any, Any] = {}
        for key, value in node.value:
            if type(key) is not yaml.ScalarNode or key.tag != _STR:
                return loader.construct_object(node, deep=True)  # merge keys, odd keys
            out[_intern(key.value)] = _construct(loader, value)
        return out
    if kind is yaml.SequenceNode and node.tag == _SEQ:
        return [_construct(loader, item) for item in node.value]
    return loader.construct_object(node, deep=True)


def _recordable(text: str) -> bool:
    """Whether a document's shape lets recorded lines give the indentation walk's answers.

    Explicit keys (``? key``), tabs, and content on the ``---`` row put keys where the
    walk (:class:`DocumentLines`) does not look for them; such documents are not recorded,
    and their lines are walked as before.
    """
    if "\t" in text or "? " in text or "?\n" in text:
        return False
    if text.startswith(("---", "...")):
        rest = text[3 : text.find("\n") if "\n" in text else len(text)].strip()
        if rest and not rest.startswith("#"):
            return False
    return True


def _first_row(text: str) -> int:
    """The line index of the first row holding YAML content (as :func:`_rows` counts them)."""
    number = 0
    start = 0
    while True:
        end = text.find("\n", start)
        stripped = text[start : end if end >= 0 else len(text)].strip()
        if stripped and stripped[0] != "#" and stripped not in ("---", "..."):
            return number
        if end < 0:
            return 0
        start = end + 1
        number += 1


class _Recording:
    """Builds a document's value as :func:`_construct` does, noting every field's row.

    A document is recorded only where the rows of its composed nodes are the rows the
    indentation walk finds (:func:`recorded_line` promises the walk's answer): every key a
    plain scalar without ``:`` or ``#``, not starting with ``-`` and with no anchor or tag
    before it (or a quoted one the walk reads as it is), the root at column 0, no key
    twice, every block sequence item starting on its ``-`` row, every flow collection on
    one row (its key's), no quoted scalar over several rows, and nothing built by PyYAML's
    own constructor but plain values (merge keys, odd keys, tagged collections).
    """

    __slots__ = ("_keys", "_loader", "_marks", "_text", "recorded")

    def __init__(self, loader: Any, text: str) -> None:
        self._loader = loader
        self._text = text
        self._keys: list[str | None] = []
        self._marks: list[int] = []
        self.recorded = True

    def lines(self, text: str) -> RecordedLines | None:
        """The record, or ``None`` when the document's shape was not one to record."""
        if not self.recorded:
            return None
        try:
            marks = array.array(_SMALL_MARKS, self._marks)
        except OverflowError:  # a document of more than 65,535 rows (a large List)
            marks = array.array(_LARGE_MARKS, self._marks)
        return (_first_row(text), tuple(self._keys), marks.tobytes())

    def _quoted_key(self, start: int, name: str) -> bool:
        """Whether the walk reads this quoted key on its row as *name* (no escapes in it)."""
        end = self._text.find("\n", start)
        row = self._text[start : end if end >= 0 else len(self._text)]
        return "\\" not in row and _key_of(row) == name

    def _leaf(self, node: Any) -> Any:
        if node.style in _QUOTED and node.end_mark.line != node.start_mark.line:
            self.recorded = False  # its rows could read as keys to the walk
        return node.value if node.tag == _STR else self._loader.construct_object(node, deep=True)

    def build(self, node: Any) -> Any:
        """The value of *node* (as :func:`_construct`), its fields' rows noted on the way."""
        kind = type(node)
        if kind is yaml.ScalarNode:
            return self._leaf(node)
        if kind is yaml.MappingNode and node.tag == _MAP:
            return self._mapping(node)
        if kind is yaml.SequenceNode and node.tag == _SEQ:
            return self._sequence(node)
        self.recorded = False
        return self._loader.construct_object(node, deep=True)

    def _mapping(self, node: Any) -> Any:
        keys, marks = self._keys, self._marks
        out: dict[Any, Any] = {}
        for key, value in node.value:
            if type(key) is not yaml.ScalarNode or key.tag != _STR:
                self.recorded = False
                return self._loader.construct_object(node, deep=True)
            name = _intern(key.value)
            row = key.start_mark.line
            if key.style:
                if not self._quoted_key(key.start_mark.index, name):
                    self.recorded = False
            elif (
                ":" in name
                or "#" in name
                or name[0] == "-"  # the walk reads "-x: 1" as a sequence item too
                or self._text[key.start_mark.index] != name[0]  # an anchor, a tag, an alias
            ):
                self.recorded = False
            keys.append(name)
            marks += (row, 0)
            if type(value) is yaml.ScalarNode:
                # A plain string, the common case, inline; any other scalar in _leaf.
                plain = value.tag == _STR and not value.style
                out[name] = value.value if plain else self._leaf(value)
                continue
            if value.flow_style and (value.start_mark.line != row or value.end_mark.line != row):
                self.recorded = False  # "[a, b]" below its key, or over several rows
            at = len(keys) - 1
            out[name] = self.build(value)
            marks[2 * at + 1] = len(keys) - at - 1
        if len(out) != len(node.value):
            self.recorded = False  # a key twice: the walk finds the first
        return out

    def _sequence(self, node: Any) -> list[Any]:
        keys, marks = self._keys, self._marks
        block = not node.flow_style
        if not block and node.end_mark.line != node.start_mark.line:
            self.recorded = False
        items = []
        text = self._text
        for item in node.value:
            mark = item.start_mark
            if block:
                start = mark.index
                if text[start - 2 : start] != "- " and (
                    text[start - mark.column : start].rstrip(" ")[-1:] != "-"
                ):
                    self.recorded = False  # "-" alone on its row, the item below
            keys.append(None)
            marks += (mark.line, 0)
            if type(item) is yaml.ScalarNode:
                plain = item.tag == _STR and not item.style
                items.append(item.value if plain else self._leaf(item))
                continue
            if item.flow_style and item.end_mark.line != mark.line:
                self.recorded = False
            at = len(keys) - 1
            items.append(self.build(item))
            marks[2 * at + 1] = len(keys) - at - 1
        return items


def recorded_line(recorded: RecordedLines, first_line: int, path: str) -> int | None:
    """The line of *path* from a document's record, as :meth:`DocumentLines.line` gives it.

    A key missing from a mapping, or an index past the end of a sequence, gives the line
    of the deepest part found, as the walk does. ``None`` for what the record cannot
    answer for certain (a step below a plain value or an empty collection, a key asked of a
    sequence, an index of a mapping): the caller walks the text.
    """
    first_row, keys, raw = recorded
    steps = _STEPS.get(path)
    if steps is None:
        steps = _steps(path)
    if not steps:
        return first_line + first_row
    wide = len(raw) > 4 * len(keys)  # two marks a field, of 2 bytes each or 4
    marks = memoryview(raw).cast(_LARGE_MARKS if wide else _SMALL_MARKS)
    row = first_row
    start, end = 0, len(keys)
    for step in steps:
        if start == end:
            return None  # below a plain value: the walk may read its rows
        at = start
        if type(step) is int:
            if keys[at] is not None:
                return None
            left = step
            while at < end and left:
                at += 1 + marks[2 * at + 1]
                left -= 1
        else:
            if keys[at] is None:
                return None
            while at < end and keys[at] != step:
                at += 1 + marks[2 * at + 1]
        if at >= end:
            break  # not there: the deepest part found
        row = marks[2 * at]
        start, end = at + 1, at + 1 + marks[2 * at + 1]
    return first_line + row


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
    return objects_of(read_documents(text, source), source, default_namespace=default_namespace)


def is_json_stream(text: str, source: str) -> bool:
    """Tell whether *text* is read as one JSON value rather than a YAML stream."""
    stripped = text.lstrip()
    return source.endswith(".json") or (stripped.startswith(("{", "[")) and _looks_json(stripped))


def read_documents(text: str, source: str, *, part: int = 0, parts: int = 1) -> RawDocuments:
    """Parse the documents of a stream (part *part* of *parts* equal shares of them).

    The shares of one stream, read in order and concatenated, are exactly the whole
    stream: line numbers and document indexes are counted over the whole text. A JSON
    stream is one value and is not shared: part 0 reads it, the others get nothing.
    """
    errors: list[tuple[int | None, str]] = []
    if is_json_stream(text, source):
        if part:
            return RawDocuments([], [])
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return RawDocuments([], [(getattr(exc, "lineno", None), "invalid JSON")])
        if isinstance(value, list):
            return RawDocuments([(item, 1, i) for i, item in enumerate(value)], [])
        return RawDocuments([(value, 1, 0)], [])
    chunks: Sequence[Chunk] = list(split_documents(text))
    if parts > 1:
        chunks = chunks[len(chunks) * part // parts : len(chunks) * (part + 1) // parts]
    docs: list[tuple[Any, int, int]] = []
    lines: list[RecordedLines | None] = []
    for chunk in chunks:
        try:
            value, recorded = load_yaml_recorded(chunk.text)
            docs.append((value, chunk.line, chunk.index))
            lines.append(recorded)
        except yaml.YAMLError as exc:
            bad = _yaml_error(exc, source, chunk)
            errors.append((bad.line, bad.reason))
        except InputError as exc:
            errors.append((chunk.line, str(exc)))
    return RawDocuments(docs, errors, lines)


def objects_of(
    raw: RawDocuments, source: str, *, default_namespace: str = "default"
) -> ParseResult:
    """Make the objects of parsed documents: Secret values wrapped, bad objects reported."""
    objects: list[KubeObject] = []
    errors = [DocumentError(source, line, reason) for line, reason in raw.errors]
    reasons: Counter[str] = Counter()
    for value, line, index in raw.docs:
        found, bad, not_object = _objects_of(
            value, Source(source, line, index), default_namespace=default_namespace
        )
        objects.extend(found)
        errors.extend(bad)
        reasons.update(not_object)
    return ParseResult(
        tuple(objects),
        tuple(errors),
        sum(reasons.values()),
        dict(reasons),
        len(raw.docs) + len(raw.errors),
    )


def _skip_reason(value: Any, source: Source) -> str:
    """Why a document is not an object to check."""
    if not isinstance(value, Mapping) or "kind" not in value or "apiVersion" not in value:
        name = source.file.rsplit("/", 1)[-1]
        return SKIP_KUSTOMIZATION if name in _KUSTOMIZATION_FILES else SKIP_NO_TYPE
    kind = value.get("kind")
    if kind in ("Kustomization", "Component"):
        return SKIP_KUSTOMIZATION
    if kind == "AdmissionReview":
        return SKIP_ADMISSION_REVIEW
    return SKIP_NO_METADATA


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
) -> tuple[list[KubeObject], list[DocumentError], list[str]]:
    """Objects, bad objects and the reasons of documents that are no object (one each)."""
    if (
        not isinstance(value, Mapping)
        or "kind" not in value
        or "apiVersion" not in value
        or ("metadata" not in value and "items" not in value)
    ):
        # Not an object stored in a cluster: plain data, a Kustomization, an
        # AdmissionReview, an EncryptionConfiguration...
        return [], [], [_skip_reason(value, source)]
    kind = value.get("kind")
    items = value.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        objects: list[KubeObject] = []
        errors: list[DocumentError] = []
        skipped: list[str] = []
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
        return [to_object(value, source, default_namespace=default_namespace)], [], []
    except DocumentError as exc:
        return [], [exc], []


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


#: Each field path's steps, split once: the 63,388 findings of the 100k bench set ask
#: about a few thousand distinct paths (many objects share field shapes). Bounded, since
#: paths may carry names (``data["a.b/c"]``).
_STEPS: dict[str, tuple[str | int, ...]] = {}
_STEPS_KEPT: Final = 1 << 16


def _steps(path: str) -> tuple[str | int, ...]:
    """The steps of *path* (:func:`parse_path`), kept for the next finding that asks."""
    steps = tuple(parse_path(path))
    if len(_STEPS) >= _STEPS_KEPT:
        _STEPS.clear()
    _STEPS[path] = steps
    return steps


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
#: ``None`` for "shape not followed, compose instead"; else (window below, line found, done).
_Walk = tuple[tuple[_Row, ...], int, bool] | None


def _rows(document_text: str) -> tuple[_Row, ...]:
    """(line index, indentation, content) of every line that holds YAML content."""
    # One pass with the fewest calls a line: this runs once per document with findings.
    rows: list[_Row] = []
    append = rows.append
    number = -1
    for raw in document_text.split("\n"):
        number += 1
        stripped = raw.strip()
        if stripped and stripped[0] != "#" and stripped not in ("---", "..."):
            append((number, len(raw) - len(raw.lstrip(" ")), stripped))
    return tuple(rows)


def _step(parent: _Walk, step: str | int, items: list[int] | None = None) -> _Walk:
    """Follow one step below *parent* (a key or a sequence index) through the rows.

    *items*, when given, are the rows of *parent*'s window that start its sequence items
    (:func:`_items`), found once for every index asked below the same parent.
    """
    if parent is None:
        return None
    window, found, done = parent
    if done or not window:
        return ((), found, True)
    base = window[0][1]
    if isinstance(step, int):
        if items is None:
            items = _items(window)
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
        # A key is a part of its row's text: the substring test skips most rows cheaply.
        if indent == base and step in text and _key_of(text) == step:
            value = text.split(":", 1)[1].strip() if ":" in text else ""
            if value.startswith(("{", "[", "&", "*", "!")):
                return None
            end = i + 1
            for row in window[i + 1 :]:
                if row[1] > base or (row[1] == base and row[2][0] == "-"):
                    end += 1
                else:
                    break
            return (window[i + 1 : end], number, False)
    if window[0][2].startswith(("{", "[")):
        return None
    return ((), found, True)


def _items(window: tuple[_Row, ...]) -> list[int]:
    """The rows of *window* that start a sequence item at its first row's indentation."""
    base = window[0][1]
    return [i for i, r in enumerate(window) if r[1] == base and r[2][0] == "-"]


class DocumentLines:
    """The lines of fields in one document, for every finding on it.

    The rows of the text are split once, each walk down a path is remembered for the paths
    that share its beginning (sibling fields), and the node tree is composed at most once,
    only for shapes the indentation walk does not follow. Build one per document that has
    findings, ask it every path, then drop it: most documents of a large scan have none.
    """

    __slots__ = ("_composed", "_first", "_items", "_text", "_walks")

    def __init__(self, document_text: str, first_line: int) -> None:
        self._text = document_text
        self._first = first_line
        self._walks: dict[tuple[str | int, ...], _Walk] = {}
        #: The item rows of a sequence's window, by its path: every index of a list
        #: (``env[0]`` .. ``env[40]``) would otherwise scan the whole list again.
        self._items: dict[tuple[str | int, ...], list[int]] = {}
        self._composed: yaml.Node | bool | None = False  # False: not composed yet

    def _walk(self, steps: tuple[str | int, ...]) -> _Walk:
        if steps in self._walks:
            return self._walks[steps]
        if not steps:
            rows = _rows(self._text)
            walked: _Walk = (rows, rows[0][0], False) if rows else None
        else:
            above, step = steps[:-1], steps[-1]
            parent = self._walk(above)
            items = None
            if isinstance(step, int) and parent is not None and parent[0] and not parent[2]:
                items = self._items.get(above)
                if items is None:
                    items = self._items[above] = _items(parent[0])
            walked = _step(parent, step, items)
        self._walks[steps] = walked
        return walked

    def fast_line(self, path: str) -> int | None:
        """The line of *path* by indentation alone, ``None`` for shapes it does not follow."""
        walked = self._walk(tuple(parse_path(path)))
        return None if walked is None else self._first + walked[1]

    def line(self, path: str) -> int:
        """The 1-based line of *path* (``""``: the first line of content); deepest part found."""
        fast = self.fast_line(path)
        if fast is not None:
            return fast
        if self._composed is False:
            try:
                self._composed = yaml.compose(self._text, Loader=_Composer)
            except yaml.YAMLError:
                self._composed = None
        node = self._composed
        if not isinstance(node, yaml.Node):
            return self._first
        best = node.start_mark.line
        for step in parse_path(path):
            child = _child(node, step)
            if child is None:
                break
            node, best = child
        return self._first + best


def fast_line_of(document_text: str, first_line: int, path: str) -> int | None:
    """Find *path* in block-style YAML by indentation alone, without building a node tree.

    Handles block mappings and block sequences (including ``- key: value`` items and
    sequences indented at their parent key's level); a missing part gives the line of the
    deepest part found. Returns ``None`` when the document uses a shape it does not follow
    (flow collections, anchors, tags on the way), and the caller composes the document.
    """
    return DocumentLines(document_text, first_line).fast_line(path)


def line_of(document_text: str, first_line: int, path: str) -> int:
    """Return the 1-based line of *path* inside one document; the deepest found part wins.

    For many paths in one document, build one :class:`DocumentLines` and ask it each.
    """
    return DocumentLines(document_text, first_line).line(path)


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
