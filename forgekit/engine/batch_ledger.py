"""What a batch-mode run keeps on disk so that it can collect instead of resubmitting.

Beside `<name>.jsonl` (or, without an output file, in the cache folder under the job's key):

- `<name>.batches.json` — the ledger, written atomically before a batch is polled: every
  submitted batch (id, model, endpoint, input file, its custom ids, status, whether its
  results were collected, the problems found), and how many times each custom id was
  submitted. A re-run reads it and polls the batches it finds instead of submitting again.
- `<name>.batch-results.jsonl` — the answers collected so far, one line per custom id (a
  JSONL store: a torn last line is cut off, duplicates are skipped), plus final failures.

A custom id is `<task id>-<request fingerprint>-<occurrence>`: the same task asking the same
request again on a re-run gets the same id, so nothing has to be stored to map it back.
Neither file ever holds an API key (they are scrubbed like the manifest, to be safe).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.engine.output import utc_now
from forgekit.engine.store import JsonlStore, write_json_atomic
from forgekit.models.base import Completion
from forgekit.secrets import scrub


def ledger_paths(out: Path | None, job_key: str) -> tuple[Path, Path]:
    """(ledger, results) for a run writing `out` (None: the cache folder, by job key)."""
    if out is not None:
        stem = out.name[: -len(out.suffix)] if out.suffix else out.name
        return out.with_name(f"{stem}.batches.json"), out.with_name(f"{stem}.batch-results.jsonl")
    from forgekit.engine.cache import default_cache_path

    folder = default_cache_path().parent / "batches"
    return folder / f"{job_key}.batches.json", folder / f"{job_key}.batch-results.jsonl"


def custom_id(task_id: str, request_fingerprint: str, occurrence: int) -> str:
    return f"{task_id}-{request_fingerprint[:16]}-{occurrence}"


def request_fingerprint(identity: str, kind: str, payload: Any, params: Any) -> str:
    return fingerprint({"model": identity, "kind": kind, "payload": payload, "params": params})


class BatchLedger:
    """The ledger and the collected results of one output file (see the module doc)."""

    def __init__(self, out: Path | None, job_key: str, secrets: list[str]) -> None:
        self.path, self.results_path = ledger_paths(out, job_key)
        self.secrets = secrets
        self.batches: dict[str, dict[str, Any]] = {}
        self.attempts: Counter[str] = Counter()
        self.answers: dict[str, Completion] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self._results: JsonlStore | None = None

    def open(self) -> BatchLedger:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                from forgekit.errors import StoreError

                raise StoreError(
                    f"{self.path}: not valid JSON ({exc.msg}); it records submitted batches — "
                    f"fix it, or move it aside to submit everything again"
                ) from None
            self.batches = data.get("batches") or {}
            self.attempts = Counter(data.get("attempts") or {})
        self._results = JsonlStore(self.results_path, checkpoint_every=1000).open()
        if self.results_path.stat().st_size:
            for line in self._results.records():
                if "completion" in line:
                    self.answers[line["id"]] = Completion.from_dict(line["completion"])
                else:
                    self.failures[line["id"]] = line
        return self

    def close(self) -> None:
        if self._results is not None:
            self._results.close()
            self._results = None

    # -- writing -------------------------------------------------------------------------
    def save(self) -> None:
        data = {
            "format": 1,
            "updated_at": utc_now(),
            "batches": self.batches,
            "attempts": dict(self.attempts),
        }
        text = scrub(json.dumps(data, ensure_ascii=False), self.secrets)
        write_json_atomic(self.path, json.loads(text))

    def add_batch(self, batch_id: str, entry: dict[str, Any]) -> None:
        """Record a submitted batch at once (fsync'ed): a crash after this line collects."""
        self.batches[batch_id] = {"submitted_at": utc_now(), "collected": False, **entry}
        for cid in entry["custom_ids"]:
            self.attempts[cid] += 1
        self.save()

    def answer(self, cid: str, completion: Completion) -> None:
        self.answers[cid] = completion
        if self._results is not None:
            self._results.append({"id": cid, "completion": completion.to_dict()})

    def fail(self, cid: str, error: str, message: str) -> None:
        entry = {"id": cid, "error": error, "message": scrub(message, self.secrets)}
        self.failures[cid] = entry
        if self._results is not None:
            self._results.append(entry)

    def checkpoint(self) -> None:
        if self._results is not None:
            self._results.checkpoint()

    # -- reading -------------------------------------------------------------------------
    def open_batches(self) -> dict[str, dict[str, Any]]:
        """Submitted batches whose results were not collected yet."""
        return {bid: b for bid, b in self.batches.items() if not b.get("collected")}

    def batch_of(self) -> dict[str, str]:
        """custom id -> the uncollected batch it is waiting in."""
        return {cid: bid for bid, b in self.open_batches().items() for cid in b["custom_ids"]}
