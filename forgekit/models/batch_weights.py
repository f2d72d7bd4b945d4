"""Weights the worker can decode in batches: a one-time conversion of formats that have no
batched CPU kernels in llama.cpp.

The embedded SmolLM2 ships as Q4_1. llama.cpp multiplies a batch of tokens by Q4_1 weights one
dot product at a time: its tiled kernels (llamafile's sgemm, the CPU "repack" layouts) cover
Q8_0, Q4_0, IQ4_NL, the K-quants and float types, not Q4_1 or Q5_1. Measured on 2 cores:
prompt evaluation 270 tok/s on the Q4_1 file, ~700 on the same weights as Q8_0; decoding eight
sequences per step 1.7x one stream on Q4_1, ~2.1x on Q8_0.

Converting Q4_1 (or Q5_1) to Q8_0 keeps the model: every 32-weight block is re-expressed on a
256-step grid instead of a 16-step one, so the rounding it adds is about 1/17 of the rounding
the file already has (teacher-forced on 1,024 tokens: the same negative log-likelihood to four
digits, KL 0.007 nats per token). Q4_0 would batch faster still, but re-quantizing to 4 bits
loses real quality (KL 0.32), so it is never chosen.

The converted file lives in the worker dir's `weights/` folder, keyed by the source file and
the llama.cpp version; it is written under a temporary name and renamed, so two workers
converting at once cannot leave a torn file. `FORGEKIT_WORKER_WEIGHTS=original` loads the file
as it is.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from pathlib import Path

import llama_cpp
import llama_cpp._logger

# general.file_type values (llama_ftype) whose matrix products have no batched CPU kernels
_SLOW_IN_BATCHES = {
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1: "Q4_1",
    llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1: "Q5_1",
}


def file_type(model_path: str) -> int | None:
    """The GGUF's general.file_type, read with a vocabulary-only load (no weights)."""
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        return None
    try:
        buf = ctypes.create_string_buffer(32)
        size = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        return int(buf.value) if size > 0 else None
    finally:
        llama_cpp.llama_model_free(model)


def batch_weights(model_path: str, folder: Path, mode: str = "auto") -> tuple[str, str]:
    """(the file the worker should load, what it is): the model itself, or its Q8_0 copy
    when its format has no batched kernels (made once, then reused)."""
    if mode == "original":
        return model_path, "as shipped"
    llama_cpp._logger.set_verbose(False)  # the conversion's per-tensor chatter
    kind = _SLOW_IN_BATCHES.get(file_type(model_path) or -1)
    if kind is None:
        return model_path, "as shipped"
    target = folder / f"{Path(model_path).stem}.{_source_key(model_path)}.Q8_0.gguf"
    note = f"Q8_0, converted once from {kind} for batched decoding"
    if target.exists():
        return str(target), note
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = max(1, os.cpu_count() or 1)
    try:
        status = llama_cpp.llama_model_quantize(model_path.encode(), str(tmp).encode(), params)
        if status != 0:
            return model_path, f"as shipped (conversion to Q8_0 failed with status {status})"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return str(target), note


def _source_key(model_path: str) -> str:
    """Path, size and mtime of the source and the llama.cpp version: a replaced file or a
    rebuilt library gets a new copy."""
    stat = os.stat(model_path)
    parts = [
        os.path.realpath(model_path),
        stat.st_size,
        stat.st_mtime_ns,
        llama_cpp.__version__,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]
