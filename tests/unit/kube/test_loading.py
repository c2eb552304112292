"""Which inputs the loader could not read, and whether the user named them (``kube.loading``).

Aspects: a named binary file is an ``UnreadableInputError`` marked ``named`` in
``index.errors`` and in ``ManifestLoader.input_errors`` / ``input_errors(index)``, with the
reason; the same file found inside a named folder is recorded but not marked; binary stdin
is a named unreadable input, not a traceback; a named path that does not exist is refused
before anything is read; a named file is read whatever its suffix, a pipe included;
readable files next to an unreadable one still load; CRLF files keep their line numbers.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from kustos.errors import InputError, UnreadableInputError
from kustos.kube.loading import ManifestLoader, input_errors

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"


def test_named_binary_file_is_a_named_input_error(tmp_path: Path) -> None:
    good, binary = tmp_path / "good.yaml", tmp_path / "image.png"
    good.write_text(CONFIGMAP % "good")
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    loader = ManifestLoader()
    index = loader.load([good, binary])
    assert [o.name for o in index] == ["good"]
    (error,) = index.errors
    assert isinstance(error, UnreadableInputError)
    assert error.named
    assert error.source == str(binary)
    assert error.line is None
    assert str(error) == f"{binary}: cannot read manifest: not UTF-8 text (binary data at byte 0)"
    assert loader.input_errors == [error]
    assert input_errors(index) == [error]
    assert error.exit_code == 2


def test_binary_file_found_in_a_folder_is_recorded_not_named(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(CONFIGMAP % "good")
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe")
    loader = ManifestLoader()
    index = loader.load([tmp_path])
    (error,) = index.errors
    assert isinstance(error, UnreadableInputError)
    assert not error.named
    assert loader.input_errors == []
    assert input_errors(index) == []


def test_binary_stdin_is_a_named_input_error() -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"kind: \xff\xfe"), encoding="utf-8")
    loader = ManifestLoader(stdin=stdin)
    index = loader.load(["-"])
    (error,) = loader.input_errors
    assert str(error) == "<stdin>: cannot read manifest: not UTF-8 text (binary data at byte 6)"
    assert index.errors == [error]


def test_missing_named_path_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    stdin = io.StringIO(CONFIGMAP % "from-stdin")
    with pytest.raises(UnreadableInputError) as info:
        ManifestLoader(stdin=stdin).load(["-", tmp_path / "nope"])
    assert str(info.value) == f"{tmp_path / 'nope'}: no such file or folder"
    assert info.value.named
    assert isinstance(info.value, InputError)
    assert stdin.tell() == 0


def test_named_file_is_read_whatever_its_suffix_pipes_too(tmp_path: Path) -> None:
    plain = tmp_path / "manifest.txt"
    plain.write_text(CONFIGMAP % "txt")
    read_fd, write_fd = os.pipe()
    os.write(write_fd, (CONFIGMAP % "piped").encode())
    os.close(write_fd)
    try:
        index = ManifestLoader().load([plain, f"/dev/fd/{read_fd}"])
    finally:
        os.close(read_fd)
    assert sorted(o.name for o in index) == ["piped", "txt"]
    assert index.errors == []


def test_windows_line_endings_load_with_the_right_lines(tmp_path: Path) -> None:
    text = (CONFIGMAP % "one") + "---\n" + (CONFIGMAP % "two")
    (tmp_path / "lf.yaml").write_text(text)
    (tmp_path / "crlf.yaml").write_bytes(text.replace("\n", "\r\n").encode())
    lines = {}
    for name in ("lf.yaml", "crlf.yaml"):
        loader = ManifestLoader()
        index = loader.load([tmp_path / name])
        assert index.errors == []
        two = next(o for o in index if o.name == "two")
        assert two.source is not None
        lines[name] = (two.source.line, loader.line(two.source, "metadata"))
    assert lines["crlf.yaml"] == lines["lf.yaml"] == (4, 7)
