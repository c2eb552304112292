"""Files, folders and stdin → ``ObjectIndex`` (an adapter: this module reads files).

Folders are walked recursively for ``*.yaml``, ``*.yml`` and ``*.json`` (hidden folders
such as ``.git`` are skipped), plus the file names matching any ``include`` glob
(``--include '*.yaml.tpl'``); the other files met are counted, not read. A path named on
the command line is read whatever its suffix (a pipe such as ``<(helm template .)`` too);
``-`` reads stdin, so ``helm template ... | kustos scan -`` works.

Files are read through :mod:`kustos.files`, so a file that cannot be read carries the
reason (permission denied, binary data at byte N, a folder). Such a file is recorded in
``index.errors`` as an :class:`UnreadableInputError` and the rest still loads; ``named`` tells
the files the user named apart from those found inside a named folder, so that the CLI
can refuse the first (exit code 2) and merely report the second. A named path that does
not exist is refused at once, before anything is read (an ``UnreadableInputError`` raised).

**Parallel parsing.** Parsing YAML is nearly all of the time of a large scan and libyaml
holds the GIL, so a large input (several files, :data:`PARALLEL_MIN_BYTES` in all) is
parsed by a pool of processes, one file per task, one process per core by default
(``workers``). Each process reads and parses its file and sends back the documents as
plain values (:class:`~kustos.kube.documents.RawDocuments`); this process turns them into
objects in the order of the files, so the index, its errors and everything a scan
reports are the same as parsing in one process (a unit test holds the two paths to
that). Secret values cross the pipe between the two processes as they were in the file;
they are wrapped in ``Sensitive`` here, before any object exists, and nothing is written.

**Locating.** The parse records the row of every field of a document as it builds the
value (:func:`~kustos.kube.documents.load_yaml_recorded`); the loader keeps these records
by file and document line, and a finding's line (:meth:`ManifestLoader.line`) is looked up
there. What a record cannot answer for certain (a shape the indentation walk reads
differently, a path below a plain value, a JSON document) is found from the file's text:
asked in file and document order, each file is split once and each document's line table
built once, then dropped.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from kustos.errors import FileAccessError, KustosError, UnreadableInputError
from kustos.files import read_text
from kustos.kube.documents import (
    Chunk,
    DocumentLines,
    RawDocuments,
    RecordedLines,
    objects_of,
    read_documents,
    recorded_line,
    split_documents,
)
from kustos.kube.index import SKIP_OTHER_EXTENSION, ObjectIndex
from kustos.kube.objects import Source

MANIFEST_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
STDIN: Final = "<stdin>"
#: Below this many bytes of files in all, starting processes costs more than it saves.
PARALLEL_MIN_BYTES: Final = 2_000_000


@dataclass(frozen=True, slots=True)
class ManifestInput:
    """One thing to read: a file (``path``) or stdin (``path is None``)."""

    path: Path | None
    #: The user named it, rather than Kustos finding it inside a named folder.
    named: bool


def manifest_inputs(
    paths: Iterable[str | Path],
    *,
    include: Sequence[str] = (),
    skipped: dict[str, int] | None = None,
) -> Iterator[ManifestInput]:
    """Yield what to read, in order; ``UnreadableInputError`` for a named path that is absent.

    Files of a walked folder are read if their suffix is a manifest's or their name matches
    one of the *include* globs; the others are counted in *skipped* (when given).
    """
    for raw in paths:
        if str(raw) == "-":
            yield ManifestInput(None, named=True)
            continue
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if any(part.startswith(".") for part in rel[:-1]):
                    continue
                if not found.is_file():
                    continue
                if found.suffix.lower() in MANIFEST_SUFFIXES or any(
                    fnmatch.fnmatch(found.name, glob) for glob in include
                ):
                    yield ManifestInput(found, named=False)
                elif skipped is not None and not found.name.startswith("."):
                    skipped[SKIP_OTHER_EXTENSION] = skipped.get(SKIP_OTHER_EXTENSION, 0) + 1
        elif path.exists():
            yield ManifestInput(path, named=True)  # a file, or a pipe (process substitution)
        else:
            raise UnreadableInputError(str(path), "no such file or folder", named=True)


def manifest_files(paths: Iterable[str | Path]) -> Iterator[Path | None]:
    """Yield the files to read, ``None`` for stdin; ``UnreadableInputError`` for a missing path."""
    for item in manifest_inputs(paths):
        yield item.path


def input_errors(index: ObjectIndex) -> list[UnreadableInputError]:
    """The paths the user named that could not be read (what the CLI refuses with exit 2)."""
    return [e for e in index.errors if isinstance(e, UnreadableInputError) and e.named]


def default_workers() -> int:
    """Processes to parse with: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


#: What a parsing process sends back for one file: its documents, or why it was unreadable.
_Parsed = RawDocuments | str


def _read_file(path: Path) -> str:
    """The text of a manifest file with universal newlines; ``FileAccessError`` if unreadable."""
    return _universal_newlines(read_text(path, what="manifest"))


def _unreadable_reason(exc: FileAccessError) -> str:
    # The message reads "<path>: cannot read manifest: <reason>"; keep the rest.
    return str(exc).removeprefix(f"{exc.path}: ")


def _parse_file(path: str) -> _Parsed:
    """Read and parse one file (in a parsing process): its documents, or the reason it failed."""
    try:
        text = _read_file(Path(path))
    except FileAccessError as exc:
        return _unreadable_reason(exc)
    return read_documents(text, path)


class ManifestLoader:
    """Reads manifests into an index and remembers the text needed to locate fields later.

    *workers* is the number of parsing processes: ``None`` for one per core when the input
    is large enough to gain from them, ``1`` to parse here, more to use a pool whatever
    the size.
    """

    def __init__(
        self,
        *,
        default_namespace: str = "default",
        stdin: TextIO | None = None,
        include: Sequence[str] = (),
        workers: int | None = None,
    ) -> None:
        self._default_namespace = default_namespace
        self._stdin = stdin if stdin is not None else sys.stdin
        self._stdin_text: str | None = None
        self._include = tuple(include)
        self._workers = workers
        self._input_errors: list[UnreadableInputError] = []
        self._empty_named: list[str] = []
        # Locating: the lines recorded by the parse, by file and document line; for the
        # rest, the file and the document asked last, kept until another is asked.
        self._recorded: dict[str, dict[int, RecordedLines]] = {}
        self._file: tuple[str, dict[int, Chunk]] | None = None
        self._document: tuple[str, int, DocumentLines] | None = None

    @property
    def input_errors(self) -> list[UnreadableInputError]:
        """Named paths (files, ``-``) that could not be read, in the order they were met."""
        return list(self._input_errors)

    @property
    def empty_named(self) -> list[str]:
        """Named files (or stdin) that were read but held no object, in the order named."""
        return list(self._empty_named)

    def load(self, paths: Iterable[str | Path], index: ObjectIndex | None = None) -> ObjectIndex:
        """Load every manifest under *paths* into *index* (a new one by default).

        A file that cannot be read becomes an :class:`UnreadableInputError` in ``index.errors``
        (and in :attr:`input_errors` when the user named it); a named path that does not
        exist raises one before anything is read.
        """
        index = index if index is not None else ObjectIndex()
        skipped: dict[str, int] = {}
        # A missing named path fails before reading.
        items = list(manifest_inputs(paths, include=self._include, skipped=skipped))
        index.count_skipped(skipped, files=True)
        workers = self._pool_size(items)
        if workers > 1:
            self._load_parallel(items, index, workers)
        else:
            for item in items:
                self._add(item, self._parse_here(item), index)
        return index

    def _pool_size(self, items: Sequence[ManifestInput]) -> int:
        files = [i.path for i in items if i.path is not None]
        if len(files) < 2:
            return 1
        if self._workers is not None:
            return min(self._workers, len(files))
        workers = default_workers()
        if workers < 2:
            return 1
        size = 0
        for path in files:
            try:
                size += path.stat().st_size
            except OSError:
                continue
            if size >= PARALLEL_MIN_BYTES:
                return min(workers, len(files))
        return 1

    def _load_parallel(
        self, items: Sequence[ManifestInput], index: ObjectIndex, workers: int
    ) -> None:
        # Imported here: a process pool is for large inputs, and loading its machinery
        # would cost every small command its start-up time (docs/architecture.md).
        import multiprocessing  # noqa: PLC0415
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

        files = [str(i.path) for i in items if i.path is not None]
        # fork: the children start at once with the modules already imported; the pool is
        # made before anything is read, so they copy little.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                parsed = pool.map(_parse_file, files)  # results in the order of the files
                for item in items:  # in order: stdin here, files from the pool
                    result = next(parsed) if item.path is not None else self._parse_here(item)
                    self._add(item, result, index)
        except BrokenProcessPool as exc:
            # A parsing process was killed (out of memory, a signal): say so, not a traceback.
            raise KustosError(
                f"a parsing process stopped before the end ({exc}); "
                "retry with --jobs 1 to parse in one process"
            ) from exc

    def _parse_here(self, item: ManifestInput) -> _Parsed:
        if item.path is not None:
            return _parse_file(str(item.path))
        if self._stdin_text is None:
            try:
                self._stdin_text = self._stdin.read()
            except UnicodeDecodeError as exc:
                return f"cannot read manifest: not UTF-8 text (binary data at byte {exc.start})"
        return read_documents(self._stdin_text, STDIN)

    def _add(self, item: ManifestInput, parsed: _Parsed, index: ObjectIndex) -> None:
        source = STDIN if item.path is None else str(item.path)
        if isinstance(parsed, str):
            error = UnreadableInputError(source, parsed, named=item.named)
            index.errors.append(error)
            if item.named:
                self._input_errors.append(error)
            return
        before = len(index)
        self._add_documents(parsed, source, index)
        if item.named and len(index) == before:
            self._empty_named.append(source)

    def _add_documents(self, raw: RawDocuments, source: str, index: ObjectIndex) -> None:
        result = objects_of(raw, source, default_namespace=self._default_namespace)
        recorded = {
            line: lines
            for (_, line, _), lines in zip(raw.docs, raw.lines, strict=False)
            if lines is not None
        }
        if recorded:
            self._recorded.setdefault(source, {}).update(recorded)
        index.add_all(result.objects)
        index.errors.extend(result.errors)
        index.count_skipped(result.skipped_by)
        index.files_read += 1
        index.documents_read += result.documents

    def load_text(self, text: str, source: str, index: ObjectIndex) -> None:
        """Parse one stream's text into *index*."""
        self._add_documents(read_documents(text, source), source, index)

    def line(self, source: Source, field: str) -> int:
        """The line of *field* (a path like ``spec.containers[0].env[1]``) in *source*.

        ``""`` is the object itself: its first line of content (not the ``---`` above it).
        Looked up in the lines the parse recorded (:func:`recorded_line`) when it has them
        all; otherwise walked in the text, fastest asked in file and document order (the
        last file and document are kept).
        """
        if source.path_prefix:
            path = f"{source.path_prefix}.{field}" if field else source.path_prefix
        else:
            path = field
        recorded = self._recorded.get(source.file, {}).get(source.line)
        if recorded is not None:
            line = recorded_line(recorded, source.line, path)
            if line is not None:
                return line
        if self._file is None or self._file[0] != source.file:
            text = self._stdin_text if source.file == STDIN else _read(source.file)
            self._file = (source.file, {c.line: c for c in split_documents(text or "")})
            self._document = None
        chunk = self._file[1].get(source.line)
        if chunk is None:
            return source.line
        if self._document is None or self._document[:2] != (source.file, source.line):
            self._document = (source.file, source.line, DocumentLines(chunk.text, chunk.line))
        return self._document[2].line(path)


def _universal_newlines(text: str) -> str:
    """``\r\n`` and ``\r`` as ``\n``, as ``open()`` reads text (line numbers depend on it)."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _read(file: str) -> str | None:
    try:
        return _read_file(Path(file))
    except KustosError:
        return None  # the file changed since it was loaded; lines fall back to the document's


def load_manifests(
    paths: Iterable[str | Path], *, default_namespace: str = "default", stdin: TextIO | None = None
) -> ObjectIndex:
    """Load manifests from files, folders or ``-`` (stdin) into a new index."""
    return ManifestLoader(default_namespace=default_namespace, stdin=stdin).load(paths)
