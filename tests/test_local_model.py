"""The embedded SmolLM2 model, for real: chat, raw completion, and a Magpie run."""

import asyncio
from pathlib import Path

import pytest

from forgekit.methods import magpie
from forgekit.models import SamplingParams, get_model
from forgekit.models.chat_formats import CHAT_FORMATS, pre_query_text
from forgekit.models.local import find_smollm2_gguf

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def local():
    return get_model("local")


def test_chat_answers_with_usage(local):
    completion = asyncio.run(
        local.chat(
            [{"role": "user", "content": "Write one sentence about the sea."}],
            SamplingParams(max_tokens=24, temperature=0.0),
        )
    )
    # A 135M model's facts are unreliable; its English and its use of the template are not.
    assert len(completion.text.split()) >= 4
    assert "<|im_" not in completion.text
    assert completion.usage.prompt_tokens > 5
    assert 0 < completion.usage.completion_tokens <= 24
    assert completion.finish_reason in {"stop", "length"}
    # the packaged file, answered from its Q8_0 copy (models/batch_weights.py)
    assert completion.model == f"local:{Path(find_smollm2_gguf()).name}:batch-weights"


def test_raw_completion_writes_a_user_query_from_the_pre_query_template(local):
    prompt = pre_query_text(CHAT_FORMATS["smollm2"], None, [])
    completion = asyncio.run(
        local.complete(
            prompt,
            SamplingParams(max_tokens=48, temperature=1.0, seed=0, stop=("<|im_end|>", "\n")),
        )
    )
    text = completion.text.strip()
    assert len(text.split()) >= 3
    assert "<|im_" not in text  # stopped at the end of the user turn
    assert completion.usage.prompt_tokens >= 10  # system + user header tokens


def test_n_samples_with_seeds_differ_and_weights_load_once(local):
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=11, n=2)
    completion = asyncio.run(local.complete("Once upon a time", params))
    assert len(completion.texts) == 2 and completion.texts[0] != completion.texts[1]
    assert local.worker() == get_model("local").worker()  # one worker, reused


def test_magpie_on_local_model_with_cache_and_resume(tmp_path):
    out = tmp_path / "magpie.jsonl"
    small = {"max_tokens": 48}
    df = magpie(2, model="local", out=out, response_params=small, progress=False)
    assert len(df) == 2
    assert df["input"].str.split().str.len().min() >= 3
    assert (df["output"].str.len() > 0).all()
    lineage = df["lineage"].iloc[0]
    assert lineage["method"] == "magpie" and lineage["model"] == ["local"]
    assert lineage["params"]["response"]["max_tokens"] == 48
    assert df["metadata"].iloc[0]["template"] == "smollm2"
    info = df.attrs["forgekit"]
    assert info["stats"]["ok"] == 2 and info["stats"]["requests"] >= 4

    # Same call again: resumed from the file, zero new requests.
    again = magpie(2, model="local", out=out, response_params=small, progress=False)
    assert again.attrs["forgekit"]["stats"]["requests"] == 0
    assert list(again["id"]) == list(df["id"])
    # Without the file, the cache answers every request.
    cached = magpie(2, model="local", response_params=small, progress=False)
    assert cached.attrs["forgekit"]["stats"]["requests"] == 0
    assert list(cached["input"]) == list(df["input"])
