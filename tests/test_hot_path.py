"""Pieces of the per-request path that were rewritten for speed keep their behaviour."""

import dataclasses
import os

from forgekit.engine.store import JsonlStore
from forgekit.models import SamplingParams


def test_sampling_params_to_dict_matches_every_field():
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=7, stop=["a", "b"], seed=4, n=2)
    as_dict = params.to_dict()
    assert list(as_dict) == [f.name for f in dataclasses.fields(SamplingParams)]
    assert as_dict == {**dataclasses.asdict(params), "stop": ["a", "b"]}
    assert SamplingParams.coerce(as_dict) == params
    assert SamplingParams().to_dict()["stop"] is None


def test_store_checkpoints_in_the_background_and_close_syncs_everything(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = JsonlStore(tmp_path / "s.jsonl", checkpoint_every=10).open()
    for i in range(25):
        store.append({"id": f"r{i}", "output": i})
    # Two checkpoints were due (after 10 and 20 lines); at least one ran off the caller's
    # thread, and the caller never waited for it.
    assert store._syncing is not None
    store.close()
    # The background sync (lines 1-10 at least) and, at close, the lines written after it.
    assert len(synced) >= 2
    assert store._syncing is None
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == 25 and lines[-1] == '{"id": "r24", "output": 24}'
