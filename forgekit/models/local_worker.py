"""The embedded model's worker process: one loaded GGUF, served on loopback to every
process of the user (Jupyter kernels, `forge` runs, `forge batch` jobs).

Why a process of its own: a native crash in llama.cpp (a bad build, an out-of-memory on a big
GGUF) then kills only the worker, never the user's kernel; and one loaded model serves every
caller, so parallel jobs batch their requests together instead of fighting for the cores.

Protocol: one TCP connection on 127.0.0.1 per request; the client sends one JSON line
(`token` from the state file, `op`), the worker answers one JSON line. A client that closes
its connection before the answer has cancelled: the worker drops its sequences at once,
freeing their batch slots. Ops: `generate` (prompt or messages, sampling params), `status`,
`shutdown`. forgekit/models/worker_pool.py starts, finds and stops workers.

Run as: python -m forgekit.models.local_worker --model PATH --state FILE [--n-ctx ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import secrets
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from forgekit.models.batch_weights import batch_weights
from forgekit.models.batched_decode import DEFAULT_MAX_TOKENS, BatchedDecoder, Request


class ChatPrompter:
    """Messages -> prompt text with the GGUF's own chat template (what llama-cpp-python's
    create_chat_completion does), else with forgekit's template family of the same name."""

    def __init__(self, decoder: BatchedDecoder) -> None:
        template = decoder.metadata("tokenizer.chat_template")
        self._jinja = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(key: str) -> str:
                token = decoder.metadata(key)
                return decoder.token_text(int(token)) if token not in (None, "") else ""

            self._jinja = Jinja2ChatFormatter(
                template,
                text_of("tokenizer.ggml.eos_token_id"),
                text_of("tokenizer.ggml.bos_token_id"),
            )

    def __call__(
        self, messages: list[dict[str, str]], family: str | None
    ) -> tuple[str, tuple[str, ...], bool]:
        """(prompt text, stop strings, whether the tokenizer should still add BOS)."""
        if self._jinja is not None:
            formatted = self._jinja(messages=messages)
            stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
            return formatted.prompt, tuple(s for s in stops if s), not formatted.added_special
        from forgekit.models.chat_formats import CHAT_FORMATS

        fmt = CHAT_FORMATS.get(family or "chatml", CHAT_FORMATS["chatml"])
        turns = [fmt.turns.get(m["role"], fmt.turns["user"]) for m in messages]
        text = fmt.bos + "".join(t.format(content=m["content"]) for t, m in zip(turns, messages))
        return text + fmt.turns["assistant"].split("{content}")[0], fmt.stops, not fmt.bos


class WorkerServer:
    def __init__(self, decoder: BatchedDecoder, args: argparse.Namespace) -> None:
        self.decoder = decoder
        self.prompter = ChatPrompter(decoder)
        self.args = args
        self.token = secrets.token_hex(16)
        self.connections = 0
        self.last_active = time.monotonic()
        self.clients: set[int] = set()
        self.served = 0
        self.done = asyncio.Event()

    # -- requests --------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            if request.get("token") != self.token:
                reply: dict[str, Any] = {"ok": False, "error": "bad token"}
            elif request.get("op") == "status":
                reply = self.status()
            elif request.get("op") == "shutdown":
                reply = {"ok": True}
                self.done.set()
            elif request.get("op") == "generate":
                self.clients.add(int(request.get("client_pid") or 0))
                reply = await self.generate(request, reader)
                if reply is None:
                    return  # the client went away: nobody to answer
            else:
                reply = {"ok": False, "error": f"unknown op {request.get('op')!r}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            self.connections -= 1
            self.last_active = time.monotonic()
            writer.close()

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pid": os.getpid(),
            "model": self.args.model,
            "weights": {"file": self.args.weights_file, "note": self.args.weights_note},
            "loads": 1,  # this process loads its model once, at start
            "slots": self.decoder.slots,
            "n_ctx": self.decoder.n_ctx_seq,
            "threads": self.args.threads,
            "clients": sorted(self.clients),
            "served": self.served,
            **self.decoder.busy(),
            **self.decoder.stats,
        }

    async def generate(self, request: dict[str, Any], reader: asyncio.StreamReader):
        params = request.get("params") or {}
        stops = tuple(params.get("stop") or ())
        add_special = True
        if request.get("messages") is not None:
            prompt, chat_stops, add_special = self.prompter(
                request["messages"], request.get("template")
            )
            stops += tuple(s for s in chat_stops if s not in stops)
        else:
            prompt = request.get("prompt") or ""
        loop = asyncio.get_running_loop()
        tokens = self.decoder.tokenize(prompt, add_special)
        seed = params.get("seed")
        futures, jobs = [], []
        for index in range(max(1, int(params.get("n") or 1))):
            future = loop.create_future()

            def done(result: dict[str, Any], future: asyncio.Future = future) -> None:
                loop.call_soon_threadsafe(_settle, future, result)

            jobs.append(
                Request(
                    tokens,
                    done,
                    temperature=float(params.get("temperature") or 0.0),
                    top_p=params.get("top_p"),
                    max_tokens=int(params.get("max_tokens") or DEFAULT_MAX_TOKENS),
                    stop=stops,
                    seed=None if seed is None else int(seed) + index,  # the n samples differ
                    json_schema=params.get("json_schema"),
                    ignore_eos=bool(request.get("ignore_eos")),
                )
            )
            futures.append(future)
        for job in jobs:
            self.decoder.submit(job)
        hangup = asyncio.ensure_future(reader.read(1))  # b"" when the client closes: cancel
        finished = asyncio.gather(*futures)
        await asyncio.wait({hangup, finished}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():
            for job in jobs:
                self.decoder.cancel(job)
            finished.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finished
            return None
        hangup.cancel()
        results = finished.result()
        self.served += 1
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            return {"ok": False, "error": errors[0]}
        return {
            "ok": True,
            "texts": [r["text"] for r in results],
            "finish_reason": results[-1]["finish_reason"],
            "prompt_tokens": sum(r["prompt_tokens"] for r in results),
            "completion_tokens": sum(r["completion_tokens"] for r in results),
        }

    # -- life ------------------------------------------------------------------------------
    async def serve(self) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _write_state(
            Path(self.args.state),
            {
                "pid": os.getpid(),
                "port": port,
                "token": self.token,
                "model": self.args.model,
                "started": time.time(),
            },
        )
        watchdog = asyncio.ensure_future(self.idle_watch(Path(self.args.state)))
        await self.done.wait()
        watchdog.cancel()
        server.close()
        _remove_state(Path(self.args.state), os.getpid())

    async def idle_watch(self, state: Path) -> None:
        """Exit after `--idle` seconds with no connection and nothing decoding. The state file
        goes first, under the discovery lock, so no client finds a worker that is leaving."""
        from forgekit.models.worker_pool import try_lock

        while True:
            await asyncio.sleep(min(1.0, self.args.idle / 4))
            busy = self.decoder.busy()
            if self.connections or busy["active"] or busy["waiting"]:
                self.last_active = time.monotonic()
                continue
            if time.monotonic() - self.last_active < self.args.idle:
                continue
            with try_lock(state) as locked:
                if locked and not self.connections:
                    _remove_state(state, os.getpid())
                    self.done.set()
                    return


def _decode_or_die(decoder: BatchedDecoder) -> None:
    """The decode loop; if it fails, the process ends with the traceback in its log, and
    clients report the death (a worker that answers nothing would hang them)."""
    try:
        decoder.run()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(70)


def _settle(future: asyncio.Future, result: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(result)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the token is a secret
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(tmp, path)


def _remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it still names this process (a successor may own it)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forgekit.models.local_worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--idle", type=float, default=600.0)
    parser.add_argument("--weights", choices=("auto", "original"), default="auto")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native crash leaves its traceback in the worker's log
    args.weights_file, args.weights_note = batch_weights(
        args.model, Path(args.state).parent / "weights", args.weights
    )
    decoder = BatchedDecoder(
        args.weights_file, n_ctx=args.n_ctx, slots=args.slots, n_threads=args.threads
    )
    thread = threading.Thread(target=_decode_or_die, args=(decoder,), name="forgekit-decode")
    thread.start()
    print(
        f"forgekit worker pid {os.getpid()} loaded {args.model} ({args.weights_note})",
        file=sys.stderr,
        flush=True,
    )
    try:
        asyncio.run(WorkerServer(decoder, args).serve())
    finally:
        decoder.stop()
        thread.join(timeout=30)
    # No teardown of llama.cpp objects: the process ends here and the OS frees everything.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
