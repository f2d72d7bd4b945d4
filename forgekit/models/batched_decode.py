"""Continuous batching on llama.cpp's low-level API: several sequences advance per
`llama_decode`, each with its own sampler chain, stop strings and token budget.

One `BatchedDecoder` owns one loaded GGUF and one context whose KV cache is split into
`slots` streams (kv_unified off: each sequence attends only to its own cells, which is what
keeps a sequence's output independent of its neighbours). A single thread runs `run()`:
between two decode steps it admits new requests (their prompts are prefilled in chunks in
the same batch as the other sequences' next tokens) and drops cancelled ones, freeing their
KV cells and slot. Results go back through each request's `on_done` callback, called on the
decode thread. Nothing here knows about sockets or asyncio (forgekit/models/local_worker.py).
"""

from __future__ import annotations

import ctypes
import json
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import llama_cpp._logger
from llama_cpp.llama_grammar import json_schema_to_gbnf

DEFAULT_MAX_TOKENS = 256
# llama-cpp-python's own sampling defaults (Llama._init_sampler), so temperature > 0 samples
# from the same distribution the in-process model did.
_TOP_K, _TOP_P, _MIN_P = 40, 0.95, 0.05


class RequestError(Exception):
    """This request cannot run (a prompt longer than the context, a bad schema)."""


@dataclass
class Request:
    """One generation: a token prompt and how to sample it."""

    prompt: list[int]
    on_done: Callable[[dict[str, Any]], None]
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    ignore_eos: bool = False  # benchmarks and tests: generate exactly max_tokens


@dataclass
class _Sequence:
    request: Request
    seq_id: int
    sampler: Any
    n_past: int = 0  # tokens of this sequence in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    sampled: list[int] = field(default_factory=list)  # generated tokens that were decoded
    generated: int = 0
    data: bytearray = field(default_factory=bytearray)
    text: str = ""

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.request.prompt)


class BatchedDecoder:
    def __init__(
        self, model_path: str, *, n_ctx: int, slots: int, n_threads: int, n_batch: int = 512
    ):
        llama_cpp._logger.set_verbose(False)  # llama.cpp's load chatter; errors still print
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            model_path.encode(), llama_cpp.llama_model_default_params()
        )
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * slots  # split evenly: each sequence gets n_ctx cells
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = False
        # Flash attention stays on llama.cpp's "auto" (on, on CPU): measured on 2 cores,
        # 53 vs 40 tok/s for one sequence and 89 vs 67 for eight. llama-cpp-python's Llama
        # turns it off, so greedy text drifts from direct llama.cpp after a few dozen tokens
        # (the same maths summed in another order); it does not drift with the batch.
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context for {model_path}")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(self.ctx)
        self.n_batch = n_batch
        self.slots = slots
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: deque[Request] = deque()
        self._active: dict[int, _Sequence] = {}
        self._free = list(range(slots - 1, -1, -1))
        # What each free slot's KV stream still holds: its last sequence's tokens. A new
        # prompt takes the free slot sharing its longest prefix and decodes only the rest
        # (forgekit's prompts share their chat template's system turn and a method's
        # instructions: 22 of the 38 tokens of a short chat prompt).
        self._cached: dict[int, list[int]] = {}
        self._prefill_turn = False  # the last step was a prompt chunk
        self.stats = {
            "steps": 0,
            "tokens": 0,
            "prompt_tokens": 0,
            "prompt_tokens_reused": 0,
            "requests": 0,
        }

    # -- called from any thread ------------------------------------------------------------
    def submit(self, request: Request) -> None:
        self._inbox.put(("add", request))

    def cancel(self, request: Request) -> None:
        self._inbox.put(("cancel", request))

    def stop(self) -> None:
        self._inbox.put(("stop", None))

    def busy(self) -> dict[str, int]:
        return {"active": len(self._active), "waiting": len(self._waiting)}

    # -- text helpers (thread-safe: they only read the vocabulary) --------------------------
    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Text -> tokens, special tokens parsed; `add_special`: the model's BOS if it wants
        one (off for a chat template that writes its own)."""
        data = text.encode("utf-8")
        room = len(data) + 16
        tokens = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, room, add_special, True
        )
        if count < 0:  # more tokens than bytes + 16 cannot happen, but the API allows it
            raise RequestError(f"cannot tokenize a prompt of {len(data)} bytes")
        return list(tokens[:count])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if size < 0:
            buf = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -size, 0, False)
        return buf.raw[:size]

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(65536)
        size = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if size >= 0 else None

    def token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode("utf-8", "replace")

    # -- the decode thread -----------------------------------------------------------------
    def run(self) -> None:
        """Decode until stop(); blocks while there is nothing to do."""
        while True:
            if not self._drain_inbox(block=not self._active and not self._waiting):
                break
            self._admit()
            if self._active:
                self._step()
        for seq in list(self._active.values()):
            self._finish(seq, {"error": "the worker is shutting down"})

    def _drain_inbox(self, block: bool) -> bool:
        while True:
            try:
                kind, request = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if kind == "stop":
                return False
            if kind == "add":
                self._waiting.append(request)
            elif kind == "cancel":
                self._drop(request)

    def _drop(self, request: Request) -> None:
        if request in self._waiting:
            self._waiting.remove(request)
            return
        for seq in list(self._active.values()):
            if seq.request is request:
                self._release(seq)

    def _admit(self) -> None:
        while self._waiting and self._free:
            request = self._waiting.popleft()
            try:
                sampler = self._check_and_sampler(request)
            except RequestError as exc:
                request.on_done({"error": str(exc)})
                continue
            seq_id, reused = self._take_slot(request.prompt)
            self._active[seq_id] = _Sequence(request, seq_id, sampler, n_past=reused)
            self.stats["prompt_tokens_reused"] += reused
            self.stats["requests"] += 1

    def _take_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with `prompt`, and
        how many of them stay (at least the prompt's last token is decoded again: its
        logits give the first sampled token)."""
        best, reused = self._free[-1], 0
        for slot in reversed(self._free):
            cached = self._cached.get(slot, ())
            limit = min(len(cached), len(prompt) - 1)
            common = 0
            while common < limit and cached[common] == prompt[common]:
                common += 1
            if common > reused:
                best, reused = slot, common
        self._free.remove(best)
        tokens = self._cached.pop(best, [])
        if len(tokens) > reused and not llama_cpp.llama_memory_seq_rm(
            self.memory, best, reused, -1
        ):
            llama_cpp.llama_memory_seq_rm(self.memory, best, -1, -1)
            reused = 0
        return best, reused

    def _check_and_sampler(self, request: Request) -> Any:
        if len(request.prompt) >= self.n_ctx_seq:
            raise RequestError(
                f"the prompt has {len(request.prompt)} tokens, more than the context window "
                f"of {self.n_ctx_seq} tokens leaves room for"
            )
        if not request.prompt:
            raise RequestError("the prompt is empty")
        return self._sampler(request)

    def _sampler(self, request: Request) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda sampler: llama_cpp.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        if request.json_schema is not None:
            try:
                grammar = json_schema_to_gbnf(json.dumps(request.json_schema))
            except Exception as exc:  # the converter raises whatever it meets
                llama_cpp.llama_sampler_free(chain)
                raise RequestError(f"json_schema cannot be turned into a grammar: {exc}") from None
            sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not sampler:
                llama_cpp.llama_sampler_free(chain)
                raise RequestError("json_schema gives a grammar llama.cpp rejects")
            add(sampler)
        if request.temperature <= 0.0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            top_p = _TOP_P if request.top_p is None else request.top_p
            add(llama_cpp.llama_sampler_init_top_k(_TOP_K))
            add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(_MIN_P, 1))
            add(llama_cpp.llama_sampler_init_temp(request.temperature))
            seed = llama_cpp.LLAMA_DEFAULT_SEED if request.seed is None else request.seed
            add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _step(self) -> None:
        """One llama_decode: either the next token of every decoding sequence, or one chunk
        of one sequence's prompt, taking turns while both kinds are waiting.

        Never both in one batch: with a KV stream per sequence llama.cpp splits a batch into
        micro-batches holding the same number of tokens of each sequence, so a 40-token
        prompt chunk beside seven 1-token decodes ran as ~40 micro-batches (measured: 77 ms
        per step instead of ~33 for eight sequences)."""
        batch, outputs, n = self.batch, [], 0

        def put(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = seq_id, logits
            n += 1

        # In seq_id order: llama.cpp maps a micro-batch's sequences to their KV streams in
        # one piece only when they come in stream order (a reversed order of the same eight
        # sequences measured 100 tok/s instead of 260).
        decoding = sorted(
            (seq for seq in self._active.values() if not seq.prefilling), key=lambda q: q.seq_id
        )
        prefilling = [seq for seq in self._active.values() if seq.prefilling]
        self._prefill_turn = bool(prefilling) and (not decoding or not self._prefill_turn)
        if self._prefill_turn:
            # The same number of prompt tokens of each waiting sequence (what one equal
            # micro-batch holds): eight 37-token prompts go in one step, not eight.
            prefilling.sort(key=lambda q: q.seq_id)
            left = [len(q.request.prompt) - q.n_past for q in prefilling]
            share = min(min(left), max(1, self.n_batch // len(prefilling)))
            for seq in prefilling[: self.n_batch // share]:
                prompt, end = seq.request.prompt, seq.n_past + share
                for pos in range(seq.n_past, end):
                    put(prompt[pos], pos, seq.seq_id, pos == len(prompt) - 1)
                self.stats["prompt_tokens"] += share
                if end == len(prompt):
                    outputs.append((n - 1, seq))
                seq.n_past = end
        else:
            for seq in decoding:
                outputs.append((n, seq))
                put(seq.next_token, seq.n_past, seq.seq_id, True)
        batch.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, batch)
        self.stats["steps"] += 1
        if status != 0:
            # Cells ran out or the step failed: fail this step's sequences, not the worker.
            for seq in list(self._active.values()):
                seq.n_past = -1  # what its KV stream holds is unknown: clear it
                self._finish(seq, {"error": f"llama_decode failed (status {status})"})
            return
        for index, seq in outputs:
            if seq.next_token is not None:
                seq.n_past += 1  # the token decoded this step is now in the cache
            token = llama_cpp.llama_sampler_sample(seq.sampler, self.ctx, index)
            self._advance(seq, token)

    def _advance(self, seq: _Sequence, token: int) -> None:
        request = seq.request
        if llama_cpp.llama_vocab_is_eog(self.vocab, token) and not request.ignore_eos:
            self._complete(seq, "stop")
            return
        seq.generated += 1
        self.stats["tokens"] += 1
        seq.data += self.piece(token)
        before = len(seq.text)
        seq.text = seq.data.decode("utf-8", errors="ignore")
        longest = max((len(s) for s in request.stop), default=0)
        window = max(0, before - longest)
        for stop in request.stop:
            found = seq.text.find(stop, window)
            if found >= 0:
                seq.text = seq.text[:found]
                self._complete(seq, "stop")
                return
        if seq.generated >= request.max_tokens or seq.n_past + 1 >= self.n_ctx_seq:
            self._complete(seq, "length")
            return
        seq.next_token = token
        seq.sampled.append(token)

    def _complete(self, seq: _Sequence, reason: str) -> None:
        self._finish(
            seq,
            {
                "text": seq.text,
                "finish_reason": reason,
                "prompt_tokens": len(seq.request.prompt),
                "completion_tokens": seq.generated,
            },
        )

    def _finish(self, seq: _Sequence, result: dict[str, Any]) -> None:
        self._release(seq)
        seq.request.on_done(result)

    def _release(self, seq: _Sequence) -> None:
        """Free the sequence's sampler and slot; its KV cells stay for a later prompt with
        the same beginning (see _take_slot)."""
        if self._active.pop(seq.seq_id, None) is None:
            return
        if seq.n_past >= 0:
            self._cached[seq.seq_id] = (seq.request.prompt + seq.sampled)[: seq.n_past]
        else:
            llama_cpp.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)
        llama_cpp.llama_sampler_free(seq.sampler)
        self._free.append(seq.seq_id)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)
