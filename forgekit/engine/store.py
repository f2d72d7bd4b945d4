"""The incremental store: records appended to a JSONL file as they finish.

Guarantees:
- each record is one `os.write` of one complete line to a file opened O_APPEND, handed to
  the OS at once (a crash of the process loses at most the line in flight) and fsync'ed at
  checkpoints (against a crash of the machine). During a run the fsync of a checkpoint runs
  on a helper thread — it can take tens of ms, and the event loop must not wait for it —
  and `close()` waits for it and syncs the rest;
- a torn tail (a last line without its newline, from a killed process) is detected on open,
  moved to `<file>.torn` for inspection, and cut off — never silently kept;
- a malformed line anywhere else is not ours to fix: opening fails naming file and line;
- ids already present are skipped, so a re-run resumes and never duplicates; a caller that
  needs more of the earlier records than their ids (a method's dedup keys) is handed each
  whole record as `open` reads it, after the repair: a torn line is never one of them.

Beside `<name>.jsonl` live `<name>.errors.jsonl` (one line per failed record attempt) and
`<name>.manifest.json` (config, counts, tokens, cost, timings; written atomically).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from forgekit.data.io import jsonl_line
from forgekit.errors import StoreError


def sidecar(path: Path, kind: str) -> Path:
    """`out.jsonl` -> `out.errors.jsonl` / `out.manifest.json`."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    suffix = ".jsonl" if kind == "errors" else ".json"
    return path.with_name(f"{stem}.{kind}{suffix}")


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class JsonlStore:
    def __init__(
        self, path: str | os.PathLike, checkpoint_every: int = 100, checkpoint_seconds: float = 5.0
    ) -> None:
        self.path = Path(path)
        self.errors_path = sidecar(self.path, "errors")
        self.manifest_path = sidecar(self.path, "manifest")
        self.done: set[str] = set()
        self.repaired: Path | None = None
        self._fd: int | None = None
        self._errors_fd: int | None = None
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._syncing: threading.Thread | None = None
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds

    # -- opening -------------------------------------------------------------------------
    def open(self, on_record: Callable[[dict[str, Any]], None] | None = None) -> JsonlStore:
        """Open for appending; `on_record` sees every record already in the file (once the
        torn tail is cut off), in the one pass that collects their ids."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._repair_torn_tail()
            done = set()
            for record in self._scan():
                done.add(record["id"])
                if on_record is not None:
                    on_record(record)
            self.done = done
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._fd = os.open(self.path, flags, 0o644)
        return self

    def _repair_torn_tail(self) -> None:
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(max(0, size - 1))
            if handle.read(1) == b"\n":
                return
            # Find the start of the unterminated last line.
            block, end = 65536, size
            start = 0
            while end > 0:
                begin = max(0, end - block)
                handle.seek(begin)
                chunk = handle.read(end - begin)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = begin + cut + 1
                    break
                end = begin
            handle.seek(start)
            torn = handle.read()
        self.repaired = self.path.with_name(self.path.name + ".torn")
        with open(self.repaired, "ab") as keep:
            keep.write(torn + b"\n")
        with open(self.path, "r+b") as handle:
            handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())

    def _scan(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StoreError(
                        f"{self.path}:{lineno}: not valid JSON ({exc.msg}); this line was not "
                        f"written by an interrupted run, so forgekit will not touch the file. "
                        f"Fix or remove the line, or choose another output path."
                    ) from None
                if not isinstance(record, dict) or "id" not in record:
                    raise StoreError(f"{self.path}:{lineno}: a record without an 'id' field")
                yield record

    # -- writing -------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> bool:
        """Write one record; False (and nothing written) if its id is already stored."""
        if self._fd is None:
            raise StoreError(f"{self.path}: store is not open")
        if record["id"] in self.done:
            return False
        _write_all(self._fd, jsonl_line(record).encode("utf-8"))
        self.done.add(record["id"])
        self._unsynced += 1
        if (
            self._unsynced >= self._checkpoint_every
            or time.monotonic() - self._last_sync > self._checkpoint_seconds
        ):
            self._checkpoint_in_background()
        return True

    def append_error(self, entry: dict[str, Any]) -> None:
        if self._errors_fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._errors_fd = os.open(self.errors_path, flags, 0o644)
        _write_all(self._errors_fd, jsonl_line(entry).encode("utf-8"))

    def checkpoint(self) -> None:
        """Everything written so far is on disk when this returns."""
        self._wait_for_sync()
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def _checkpoint_in_background(self) -> None:
        """Start an fsync of what is written so far, unless one is still running (the next
        checkpoint then covers these lines too)."""
        if self._fd is None or (self._syncing is not None and self._syncing.is_alive()):
            return
        self._syncing = threading.Thread(
            target=os.fsync, args=(self._fd,), name="forgekit-store-fsync", daemon=True
        )
        self._syncing.start()
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def _wait_for_sync(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def records(self, ids: set[str] | None = None) -> list[dict[str, Any]]:
        return [r for r in self._scan() if ids is None or r["id"] in ids]

    def close(self) -> None:
        self.checkpoint()
        for fd in (self._fd, self._errors_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._errors_fd = None
