"""Publishing an export folder to the Hugging Face Hub (a data set repo).

The token comes from the environment only (HF_TOKEN, or HUGGING_FACE_HUB_TOKEN), never from a
file or an argument that could end up in a notebook. Offline, the push fails at once naming
the repo (see forgekit.data.sources.require_online)."""

from __future__ import annotations

import os
from pathlib import Path

from forgekit.data.sources import require_online
from forgekit.errors import ConfigError

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def hub_token() -> str | None:
    return next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), None)


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = True) -> str:
    """Upload `folder` (data files, README.md card) to the data set repo `repo_id`, creating
    it (private by default) if needed; returns the repo's URL."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"push_to_hub {repo_id!r}: use org/name")
    what = f"push_to_hub {repo_id}"
    require_online(what)
    token = hub_token()
    if token is None:
        raise ConfigError(f"{what}: set HF_TOKEN in the environment (a write token)")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError(f"{what}: needs `pip install forgekit[hf]`") from None
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(Path(folder)),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[".*"],  # temporary files of a write in progress
        commit_message="forgekit export",
    )
    return f"https://huggingface.co/datasets/{repo_id}"
