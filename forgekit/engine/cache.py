"""On-disk response cache (SQLite), keyed by a fingerprint of the request.

The key covers what determines an answer: the model's identity (provider, endpoint, model),
the request kind, the messages or prompt, and every sampling parameter including the seed.
API keys are never part of a key or a value. WAL mode lets parallel papermill jobs share
one cache file; commits are batched because a commit per response would dominate the cost
of a fast endpoint.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.models.base import Completion, SamplingParams


def default_cache_path() -> Path:
    root = os.environ.get("FORGEKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "forgekit"
    )
    return Path(root) / "responses.sqlite"


def request_key(identity: str, kind: str, payload: Any, params: SamplingParams) -> str:
    return fingerprint(
        {"model": identity, "kind": kind, "payload": payload, "params": params.to_dict()}
    )


class ResponseCache:
    def __init__(
        self,
        path: str | os.PathLike | None = None,
        commit_every: int = 200,
        commit_seconds: float = 2.0,
    ) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses "
            "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._db.commit()
        self._pending = 0
        self._last_commit = time.monotonic()
        self._commit_every = commit_every
        self._commit_seconds = commit_seconds

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return Completion.from_dict(json.loads(row[0]), cached=True)
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss, and will be replaced

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(completion.to_dict(), ensure_ascii=False), time.time()),
        )
        self._pending += 1
        now = time.monotonic()
        if self._pending >= self._commit_every or now - self._last_commit > self._commit_seconds:
            self.commit()

    def commit(self) -> None:
        if self._pending:
            self._db.commit()
            self._pending = 0
        self._last_commit = time.monotonic()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.commit()
        self._db.close()
