# Types of the native core built from native/src/lib.rs (see kustos.audit.native).
from collections.abc import Callable, Sequence
from typing import Any

class Batch:
    lines: int
    @property
    def events(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @staticmethod
    def pending(count: int) -> Batch: ...
    def unsure(self) -> list[tuple[int, bytes]]: ...
    def resolve(
        self, position: int, answer: tuple[bytes, str, str, Sequence[int], str, bool] | None
    ) -> None: ...

class Window:
    def __init__(self, size: int) -> None: ...
    def __contains__(self, key: tuple[str, str]) -> bool: ...
    def __len__(self) -> int: ...
    def remember(self, keys: Sequence[tuple[str, str]]) -> None: ...
    def remember_commit(self, commit: Commit) -> None: ...

class Commit:
    seq: int
    stored: list[int]
    repeated: int
    stripped: int
    viewed: int
    @property
    def blob(self) -> bytes: ...
    @property
    def head(self) -> bytes: ...
    @property
    def spans(self) -> bytes: ...
    def rows(self) -> list[tuple[int, int, str, str, bytes]]: ...
    def json_array(self) -> bytes: ...

def read_lines(buf: bytes, start: int, end: int) -> Batch: ...
def cut_lines(buf: bytes, start: int, count: int) -> tuple[int, int]: ...
def read_event_list(body: bytes) -> Batch | None: ...
def commit(
    batches: Sequence[Batch],
    window: Window,
    seq: int,
    head: bytes,
    offset: int,
    *,
    block: int,
    buckets: int,
) -> Commit: ...

class Detector:
    def __init__(
        self,
        classify: Callable[[str], int],
        zone_offset: Callable[[int, bool], tuple[int, bool]],
        *,
        ignore_lists: Sequence[tuple[int, Sequence[str]]],
        learning: int,
        cooldown: float,
        bulk_window: float,
        denied_window: float,
        exec_window: float,
        enabled: Sequence[bool],
        severities: Sequence[str],
        new_ip_service_accounts: bool,
        off_hours_service_accounts: bool,
        hours: tuple[int, int],
        days: Sequence[int],
        off_hours_suffix: str,
        bulk_secrets: int,
        bulk_namespaces: int,
        cluster_wide: bool,
        bulk_window_text: str,
        denied_threshold: int,
        denied_window_text: str,
        exec_window_text: str,
        operator: str,
    ) -> None: ...
    def process(
        self, texts: bytes, first_seq: int, offset: int, index: int
    ) -> tuple[bytes, int, tuple[int, int, int] | None]: ...
    def process_commit(
        self, commit: Commit, first_seq: int, index: int
    ) -> tuple[bytes, int, tuple[int, int, int] | None]: ...
    @property
    def started(self) -> int | None: ...
    def export_json(self, started: str | None) -> bytes | None: ...
    def export(self) -> tuple[Any, ...]: ...
    def load(
        self,
        started: int | None,
        last_seq: int,
        readers: Sequence[tuple[str, str, str]],
        addresses: Sequence[tuple[str, Sequence[str]]],
        windows: Sequence[Any],
        distinct: Sequence[Any],
        sessions: Sequence[tuple[str, tuple[float, str, str, str]]],
        cooldowns: Sequence[tuple[str, float]],
        recent: Sequence[str],
        prune_at: int,
        sessions_at: int,
    ) -> None: ...

# The credential detector's per-value decision (native/src/credentials.rs; see
# kustos.scan.credentials): None, a rule code, (code, embedded setting's name), or -1 (unsure).
def detect_credential(
    key: str | None, value: str, jwt_header: Callable[[str], bool]
) -> int | tuple[int, str] | None: ...
def credential_key_class(key: str) -> int: ...
