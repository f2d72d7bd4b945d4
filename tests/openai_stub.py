"""A small OpenAI-protocol HTTP server for tests and benchmarks, with fault injection.

It speaks just enough of the protocol for the `openai` SDK: POST /v1/chat/completions,
POST /v1/completions, POST /v1/embeddings, GET /v1/models. Answers are deterministic:
  chat:       "echo: <last user message>"   (or the first matching scripted rule)
  completion: "completion: <last 40 chars of the prompt>"

Scripted answers: `rules` of {"match": regex, "content": text} or {"match": ..., "contents":
[...]} (answered in turn), or {"match": ..., "by_seed": [...]} (the answer at the request's
seed modulo the list's length: the same seed, the same answer, whatever the order).

Faults are injected per distinct request body, deterministically: a body whose hash falls
under `fault_rate` fails on its first `faults_per_request` attempts, then succeeds. So a run
with enough retries always completes, and a test can assert exact counts.

Fault kinds: 429 (with Retry-After), 500, hang (sleeps past the client's timeout), drop
(closes the connection without answering), malformed (a 200 whose body is not JSON),
shape (a 200 JSON body without `choices`). `hold_after` holds every model request after the
first N until the next reconfiguration (then drops it), so a test can freeze a client at a
known point of progress.

Batch API (`route_batch_api`, knobs in BATCH_DEFAULTS): POST /v1/files (multipart upload),
GET /v1/files/{id}[/content], POST /v1/batches, GET /v1/batches/{id} (each retrieve moves
the batch on; it ends after `batch_polls` retrieves), POST /v1/batches/{id}/cancel. Faults:
items answered in the error file, expiry part-way, a torn line in the output file, batches
held in_progress. POST /_batch_config {json} changes knobs without resetting the counters;
GET /_batch_state shows every file (content included) and batch.

Control: POST /_config {json} replaces the configuration; GET /_stats returns counters;
POST /_reset clears counters. Run as a process: `python openai_stub.py --port 0` prints
`PORT <n>` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from collections import Counter
from typing import Any

# The batch API's knobs (see `route_batch_api`); part of the configuration like the rest.
BATCH_DEFAULTS: dict[str, Any] = {
    "batch_polls": 2,  # retrieves before a batch ends (validating, in_progress, ... then done)
    "batch_hold": False,  # keep every batch in_progress until this is turned off
    "batch_error_rate": 0.0,  # share of a file's lines (by position) answered in the error file
    "batch_error_status": 500,  # their status code (500: worth resubmitting; 400: not)
    "batch_faults_per_item": 1,  # an item fails only on its first N submissions
    "batch_expire_after": None,  # N: the batch ends `expired` after N items are done
    "batch_expire_times": 1,  # ... for the first this-many batches only
    "batch_expired_in_error_file": True,  # expired items listed as batch_expired (else absent)
    "batch_corrupt_line": None,  # N: line N of the output file is torn (invalid JSON) ...
    "batch_corrupt_times": 1,  # ... in the first this-many batches
}

DEFAULT_CONFIG: dict[str, Any] = {
    "latency_ms": 0.0,
    "fault_rate": 0.0,
    "faults": ["429", "500", "hang", "drop", "malformed"],
    "faults_per_request": 1,
    "retry_after": 0.05,  # seconds, sent as retry-after-ms and Retry-After
    "hang_s": 5.0,
    "rules": [],  # [{"match": regex, "content": str} or {"match": ..., "contents": [...]}]
    "chat_only": False,  # 404 on /v1/completions, like a chat-only provider
    "status": None,  # force every model request to answer this status (e.g. 401)
    # Answer only this many model requests; later ones wait until the next /_config or
    # /_reset. Lets a test stop a client at a point of progress, whatever the machine's speed.
    "hold_after": None,
    "response_format": None,  # "reject": answer 400 to requests with response_format
    # Hold every model request whose body matches this regex, the same way: freezes part of
    # a run by content (e.g. one shard's items), whatever the order requests arrive in.
    "hold_match": None,
    # Answer 401 to a model request whose Authorization is not "Bearer <require_key>".
    "require_key": None,
    # Capacity that changes with progress (see `capacity_route`): [[answers, limit], ...],
    # e.g. [[0, 32], [300, 4], [900, 24]]: up to 32 model requests at once until 300 answers,
    # then 4, then 24 from the 900th answer on. Beyond the limit a request gets a 429
    # ("overload": "429") or waits for a free place, so latency rises ("queue", like vLLM).
    "capacity": None,
    "overload": "429",
    **BATCH_DEFAULTS,
}


class Stub:
    def __init__(self) -> None:
        self.config = dict(DEFAULT_CONFIG)
        self.stats: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.rule_turns: Counter[int] = Counter()
        self.log: list[dict[str, Any]] = []
        self.inflight: Counter[int] = Counter()  # per generation, so a reset starts at 0
        self.generation = 0
        self.busy = 0  # model requests being served within the capacity limit
        self.freed = asyncio.Event()

    def reset(self) -> None:
        self.generation += 1
        self.stats.clear()
        self.attempts.clear()
        self.rule_turns.clear()
        self.log.clear()

    # -- fault plan ----------------------------------------------------------------------
    def fault_for(self, body: bytes) -> str | None:
        digest = hashlib.sha256(body).digest()
        self.attempts[digest.hex()] += 1
        attempt = self.attempts[digest.hex()]
        rate = float(self.config["fault_rate"])
        if rate <= 0 or attempt > int(self.config["faults_per_request"]):
            return None
        if int.from_bytes(digest[:4], "big") / 2**32 >= rate:
            return None
        kinds = self.config["faults"]
        return kinds[(digest[4] + attempt) % len(kinds)]

    # -- answers -------------------------------------------------------------------------
    def answer(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        model = request.get("model", "stub")
        n = int(request.get("n") or 1)
        if path.endswith("/chat/completions"):
            messages = request.get("messages") or []
            last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            text = self.scripted(json.dumps(messages, ensure_ascii=False), request.get("seed"))
            text = f"echo: {last}" if text is None else text
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
            kind = "chat.completion"
        else:
            prompt = request.get("prompt") or ""
            text = self.scripted(prompt, request.get("seed"))
            text = f"completion: {prompt[-40:]}" if text is None else text
            prompt_tokens = len(prompt.split())
            choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(n)]
            kind = "text_completion"
        return {
            "id": "stub-1",
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()) * n,
                "total_tokens": prompt_tokens + len(text.split()) * n,
            },
        }

    def scripted(self, text: str, seed: int | None = None) -> str | None:
        """The first rule whose regex matches: its `content`, the next of its `contents`
        (in turn, cycling; use concurrency=1 where the order matters), or its `by_seed`
        entry for the request's seed."""
        for index, rule in enumerate(self.config.get("rules") or []):
            if re.search(rule["match"], text, re.DOTALL):
                if "by_seed" in rule:
                    return rule["by_seed"][int(seed or 0) % len(rule["by_seed"])]
                if "contents" in rule:
                    turn = self.rule_turns[index]
                    self.rule_turns[index] += 1
                    return rule["contents"][turn % len(rule["contents"])]
                return rule["content"]
        return None


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    reason = {
        200: "OK",
        404: "Not Found",
        429: "Too Many Requests",
        401: "Unauthorized",
        500: "Internal Server Error",
        400: "Bad Request",
    }.get(status, "Status")
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
        "Connection: keep-alive",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> bytes:
    return _response(status, json.dumps(value).encode(), headers)


async def handle(stub: Stub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
            auth = headers.get("authorization", "")
            reply = await route(stub, method, path.split("?")[0], body, auth)
            if reply is None:  # drop: close without answering
                writer.transport.abort()
                return
            writer.write(reply)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def route(stub: Stub, method: str, path: str, body: bytes, auth: str = "") -> bytes | None:
    generation = stub.generation
    stub.inflight[generation] += 1
    stub.stats["max_inflight"] = max(stub.stats["max_inflight"], stub.inflight[generation])
    try:
        if stub.config.get("capacity") and _is_model_path(path):
            return await capacity_route(stub, method, path, body, auth)
        return await _route(stub, method, path, body, auth)
    finally:
        stub.inflight[generation] -= 1


def _is_model_path(path: str) -> bool:
    return path.endswith("/chat/completions") or path.endswith("/completions")


def capacity_now(stub: Stub) -> int:
    """The limit of the phase the stub is in, by the number of answers given so far."""
    answered = stub.stats["ok"]
    limit = 1
    for after, phase_limit in stub.config["capacity"]:
        if answered >= int(after):
            limit = int(phase_limit)
    return limit


async def capacity_route(
    stub: Stub, method: str, path: str, body: bytes, auth: str
) -> bytes | None:
    """A server with a capacity: at most `capacity_now` model requests served at once.
    Beyond it, a 429 with Retry-After, or ("queue") a wait for a free place."""
    limit = capacity_now(stub)
    stub.stats[f"phase_limit_{limit}"] += 1
    if stub.busy >= limit:
        if stub.config.get("overload", "429") == "429":
            stub.stats["over_capacity"] += 1
            wait = float(stub.config["retry_after"])
            return _json(
                429,
                {"error": {"message": "over capacity"}},
                {"retry-after-ms": str(int(wait * 1000)), "Retry-After": f"{wait:g}"},
            )
        stub.stats["queued"] += 1
        while stub.busy >= capacity_now(stub):
            stub.freed.clear()
            await stub.freed.wait()
    stub.busy += 1
    stub.stats["max_busy"] = max(stub.stats["max_busy"], stub.busy)
    try:
        return await _route(stub, method, path, body, auth)
    finally:
        stub.busy -= 1
        stub.freed.set()


async def _route(stub: Stub, method: str, path: str, body: bytes, auth: str) -> bytes | None:
    if path.startswith(("/v1/files", "/v1/batches", "/_batch")):
        return route_batch_api(stub, method, path, body)
    if path == "/_config" and method == "POST":
        stub.config = {**DEFAULT_CONFIG, **json.loads(body or b"{}")}
        stub.reset()
        return _json(200, {"ok": True})
    if path == "/_reset":
        stub.reset()
        return _json(200, {"ok": True})
    if path == "/_stats":
        last = getattr(stub, "last_response_format", None)
        return _json(
            200, {"stats": dict(stub.stats), "log": stub.log[-2000:], "response_format": last}
        )
    if path.endswith("/models"):
        return _json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
    if path.endswith("/embeddings") and method == "POST":
        request = json.loads(body)
        items = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [((hash(str(t)) >> k) & 255) / 255 for k in range(0, 64, 8)],
            }
            for i, t in enumerate(items)
        ]
        return _json(
            200,
            {
                "object": "list",
                "data": data,
                "model": request.get("model"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )
    if not (path.endswith("/chat/completions") or path.endswith("/completions")):
        return _json(404, {"error": {"message": f"no route {path}"}})

    stub.stats["requests"] += 1
    hold_after = stub.config.get("hold_after")
    if hold_after is not None and stub.stats["requests"] > int(hold_after):
        stub.stats["held"] += 1
        generation = stub.generation
        while stub.generation == generation:  # released by the next configure or reset
            await asyncio.sleep(0.01)
        return None  # the held request belongs to an earlier phase: drop it
    if await _held_by_match(stub, body):
        return None
    refused = _refused_key(stub, auth)
    if refused is not None:
        return refused
    if stub.config.get("chat_only") and not path.endswith("/chat/completions"):
        stub.stats["404"] += 1
        return _json(404, {"error": {"message": "this endpoint offers chat only"}})
    if stub.config.get("status"):
        status = int(stub.config["status"])
        stub.stats[str(status)] += 1
        # Like some real servers, echo what was sent, key included: forgekit must scrub it.
        return _json(status, {"error": {"message": f"forced status {status}; got {auth}"}})
    fault = stub.fault_for(body)
    stub.log.append({"t": time.time(), "fault": fault, "body": hashlib.sha1(body).hexdigest()[:12]})
    if fault:
        stub.stats[f"fault_{fault}"] += 1
    if stub.config["latency_ms"]:
        await asyncio.sleep(float(stub.config["latency_ms"]) / 1000)
    if fault == "429":
        wait = float(stub.config["retry_after"])
        return _json(
            429,
            {"error": {"message": "rate limited"}},
            {"retry-after-ms": str(int(wait * 1000)), "Retry-After": f"{wait:g}"},
        )
    if fault == "500":
        return _json(500, {"error": {"message": "internal error"}})
    if fault == "hang":
        await asyncio.sleep(float(stub.config["hang_s"]))
    if fault == "drop":
        return None
    if fault == "malformed":
        return _response(200, b'{"id": "x", "choices": [ {"trunc')
    if fault == "shape":
        return _json(200, {"id": "x", "object": "chat.completion"})
    request = json.loads(body)
    refused = structured_output(stub, request)
    if refused is not None:
        return refused
    stub.stats["ok"] += 1
    return _json(200, stub.answer(path, request))


def structured_output(stub: Stub, request: dict[str, Any]) -> bytes | None:
    """`response_format` (structured output): counted in stats["response_format"], the last
    one kept in stats; with config "response_format": "reject" the stub answers 400 to any
    request that has one, like a server without structured output."""
    wanted = request.get("response_format")
    if wanted is None:
        return None
    stub.stats["response_format"] += 1
    stub.last_response_format = wanted
    if stub.config.get("response_format") == "reject":
        stub.stats["400"] += 1
        return _json(400, {"error": {"message": "response_format is not supported"}})
    return None


async def _held_by_match(stub: Stub, body: bytes) -> bool:
    """`hold_match`: hold a matching request until the next /_config or /_reset; True when
    it was held (the caller then drops it: it belongs to an earlier phase)."""
    pattern = stub.config.get("hold_match")
    if not pattern or not re.search(pattern, body.decode("utf-8", "replace")):
        return False
    stub.stats["held"] += 1
    generation = stub.generation
    while stub.generation == generation:
        await asyncio.sleep(0.01)
    return True


def _refused_key(stub: Stub, auth: str) -> bytes | None:
    """`require_key`: a 401 (without echoing what was sent) unless the request carries it."""
    wanted = stub.config.get("require_key")
    if not wanted or auth == f"Bearer {wanted}":
        return None
    stub.stats["401"] += 1
    return _json(401, {"error": {"message": "wrong or missing API key"}})


# -- the batch API: /v1/files and /v1/batches ------------------------------------------------
class BatchState:
    """Uploaded files and batches; they live as long as the server (a re-run after a crash
    collects what an earlier client submitted). Counters go to `stub.stats`."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.submissions: Counter[str] = Counter()  # custom_id -> times submitted
        self.expired = self.corrupted = 0
        self.next_id = 0
        self.generation = 0

    def new_scenario(self, generation: int) -> None:
        """A /_config or /_reset starts the fault plan afresh (files and batches stay)."""
        if generation != self.generation:
            self.generation = generation
            self.submissions.clear()
            self.expired = self.corrupted = 0

    def new_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}-{self.next_id:05d}"

    def add_file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = self.new_id("file")
        self.files[file_id] = {"content": content, "purpose": purpose, "filename": filename}
        return _file_object(file_id, self.files[file_id])


_BATCH_STATE: dict[int, BatchState] = {}


def batch_state(stub: Stub) -> BatchState:
    return _BATCH_STATE.setdefault(id(stub), BatchState())


def _file_object(file_id: str, file: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(file["content"]),
        "created_at": int(time.time()),
        "filename": file["filename"],
        "purpose": file["purpose"],
        "status": "processed",
    }


def parse_multipart(body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, content) of a multipart/form-data body (the boundary is its first
    line, so the Content-Type header is not needed)."""
    boundary = body.split(b"\r\n", 1)[0]
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part[2:].partition(b"\r\n\r\n")
        disposition = head.decode("latin-1")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, content[:-2])
    return fields


def route_batch_api(stub: Stub, method: str, path: str, body: bytes) -> bytes:
    state = batch_state(stub)
    state.new_scenario(stub.generation)
    parts = path.strip("/").split("/")
    if path == "/_batch_config" and method == "POST":  # change batch knobs, keep counters
        stub.config.update(json.loads(body or b"{}"))
        return _json(200, {"ok": True})
    if path == "/_batch_state":
        files = {
            k: {**f, "content": f["content"].decode("utf-8", "replace")}
            for k, f in state.files.items()
        }
        return _json(200, {"files": files, "batches": state.batches})
    if parts[:2] == ["v1", "files"]:
        if method == "POST" and len(parts) == 2:
            fields = parse_multipart(body)
            filename, content = fields.get("file", ("upload.jsonl", b""))
            purpose = fields.get("purpose", (None, b""))[1].decode()
            stub.stats["files_uploaded"] += 1
            return _json(200, state.add_file(content, purpose, filename or "upload.jsonl"))
        file = state.files.get(parts[2]) if len(parts) > 2 else None
        if file is None:
            return _json(404, {"error": {"message": f"no such file {path}"}})
        if len(parts) == 4 and parts[3] == "content":
            stub.stats["files_downloaded"] += 1
            return _response(200, file["content"])
        return _json(200, _file_object(parts[2], file))
    if parts[:2] == ["v1", "batches"]:
        if method == "POST" and len(parts) == 2:
            return _create_batch(stub, state, json.loads(body))
        batch = state.batches.get(parts[2]) if len(parts) > 2 else None
        if batch is None:
            return _json(404, {"error": {"message": f"no such batch {path}"}})
        if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
            stub.stats["batch_cancels"] += 1
            if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                _finish_batch(stub, state, batch, cancelled=True)
            return _json(200, _public(batch))
        stub.stats["batch_retrieves"] += 1
        _advance_batch(stub, state, batch)
        return _json(200, _public(batch))
    return _json(404, {"error": {"message": f"no route {path}"}})


def _create_batch(stub: Stub, state: BatchState, request: dict[str, Any]) -> bytes:
    file = state.files.get(request.get("input_file_id", ""))
    if file is None:
        return _json(400, {"error": {"message": "input_file_id: no such file"}})
    stub.stats["batch_creates"] += 1
    batch_id = state.new_id("batch")
    lines = [json.loads(line) for line in file["content"].splitlines() if line.strip()]
    stub.stats["batch_items"] += len(lines)
    for line in lines:
        state.submissions[line["custom_id"]] += 1
    state.batches[batch_id] = {
        "id": batch_id,
        "object": "batch",
        "endpoint": request.get("endpoint"),
        "input_file_id": request["input_file_id"],
        "completion_window": request.get("completion_window", "24h"),
        "status": "validating",
        "created_at": int(time.time()),
        "metadata": request.get("metadata"),
        "output_file_id": None,
        "error_file_id": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "_polls": 0,
        "_attempts": {line["custom_id"]: state.submissions[line["custom_id"]] for line in lines},
    }
    return _json(200, _public(state.batches[batch_id]))


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _advance_batch(stub: Stub, state: BatchState, batch: dict[str, Any]) -> None:
    if batch["status"] in ("completed", "failed", "expired", "cancelled"):
        return
    batch["_polls"] += 1
    if stub.config.get("batch_hold"):
        batch["status"] = "in_progress"
        return
    polls = int(stub.config.get("batch_polls") or 0)
    if batch["_polls"] < polls:
        batch["status"] = "finalizing" if batch["_polls"] == polls - 1 else "in_progress"
        return
    _finish_batch(stub, state, batch)


def _finish_batch(
    stub: Stub, state: BatchState, batch: dict[str, Any], cancelled: bool = False
) -> None:
    """Answer every line: output file (reversed: results come in any order) and error file."""
    config = stub.config
    lines = [
        json.loads(line)
        for line in state.files[batch["input_file_id"]]["content"].splitlines()
        if line.strip()
    ]
    expire_at = config.get("batch_expire_after")
    expire = expire_at is not None and state.expired < int(config.get("batch_expire_times", 1))
    outputs: list[str] = []
    errors: list[str] = []
    done = 0
    for index, line in enumerate(lines):
        cid = line["custom_id"]
        if cancelled or (expire and index >= int(expire_at)):
            if config.get("batch_expired_in_error_file", True):
                code = "batch_cancelled" if cancelled else "batch_expired"
                error = {"code": code, "message": "not executed before the window closed"}
                errors.append(
                    json.dumps(
                        {"id": f"req-{cid}", "custom_id": cid, "response": None, "error": error}
                    )
                )
            continue
        failing = _batch_item_fails(config, index, batch["_attempts"][cid])
        if failing:
            status = int(config.get("batch_error_status", 500))
            body = {"error": {"message": f"injected batch item failure ({status})"}}
            response = {"status_code": status, "request_id": f"r-{cid}", "body": body}
            errors.append(
                json.dumps(
                    {"id": f"req-{cid}", "custom_id": cid, "response": response, "error": None}
                )
            )
            continue
        done += 1
        answer = stub.answer(line["url"], line["body"])
        response = {"status_code": 200, "request_id": f"r-{cid}", "body": answer}
        outputs.append(
            json.dumps({"id": f"req-{cid}", "custom_id": cid, "response": response, "error": None})
        )
    outputs.reverse()
    corrupt = config.get("batch_corrupt_line")
    if corrupt and outputs and state.corrupted < int(config.get("batch_corrupt_times", 1)):
        state.corrupted += 1
        at = min(int(corrupt), len(outputs)) - 1
        outputs[at] = outputs[at][: len(outputs[at]) // 2]  # a torn line: invalid JSON
    if expire:
        state.expired += 1
    for kind, rows in (("output", outputs), ("error", errors)):
        if rows:
            content = ("\n".join(rows) + "\n").encode()
            batch[f"{kind}_file_id"] = state.add_file(content, f"batch_{kind}", f"{kind}.jsonl")[
                "id"
            ]
    batch["status"] = "cancelled" if cancelled else ("expired" if expire else "completed")
    batch["request_counts"] = {"total": len(lines), "completed": done, "failed": len(errors)}
    stub.stats[f"batch_{batch['status']}"] += 1


def _batch_item_fails(config: dict[str, Any], index: int, attempt: int) -> bool:
    """Exactly `batch_error_rate` of a file's lines fail, spread by position (every second
    line at 0.5): a fixed share whatever the custom ids are (they hold the stub's port, so a
    hash of them would fail no line at all in some sessions)."""
    rate = float(config.get("batch_error_rate") or 0)
    if rate <= 0 or attempt > int(config.get("batch_faults_per_item", 1)):
        return False
    return int((index + 1) * rate) > int(index * rate)


async def serve(port: int, host: str = "127.0.0.1") -> None:
    stub = Stub()
    server = await asyncio.start_server(lambda r, w: handle(stub, r, w), host, port, backlog=1024)
    actual = server.sockets[0].getsockname()[1]
    print(f"PORT {actual}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default=None, help="initial config as JSON")
    args = parser.parse_args()
    if args.config:
        DEFAULT_CONFIG.update(json.loads(args.config))
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
