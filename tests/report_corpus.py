"""A realistic corpus for the diversity report tests: one-line descriptions of Debian's man
pages (`apropos`), labelled by command family — one family (gcloud) is most of them, keys
are long page names. Where the man database is missing (a slim container), a generated set
with the same shape stands in: one label 88% of the records, long keys, a tail of rare
labels, some exact duplicates."""

from __future__ import annotations

import random
import re
import shutil
import subprocess

import pandas as pd

LINE = re.compile(r"^(?P<name>\S+) \((?P<section>[^)]+)\)\s+- (?P<text>.+)$")


def man_page_corpus(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rows = _apropos()
    if len(rows) < n:
        rows = _generated(n, seed)
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(rows)), n))
    return pd.DataFrame([rows[i] for i in picked]).reset_index(drop=True)


def _apropos() -> list[dict]:
    if not shutil.which("apropos"):
        return []
    try:
        out = subprocess.run(
            ["apropos", "-l", "."], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            name = match["name"]
            rows.append(
                {
                    "id": f"{name}({match['section']})",
                    "output": match["text"].strip(),
                    "tag": re.split(r"[_.\-]", name)[0] or name,
                }
            )
    return rows


def _generated(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    verbs = ["create", "delete", "describe", "list", "update", "add-iam-policy-binding"]
    nouns = ["instances", "disks", "networks", "buckets", "clusters", "service-accounts"]
    tails = ["git", "systemd", "openssl", "pthread", "llvm", "pam", "perf", "tc", "iso"]
    rows = []
    for i in range(n):
        if rng.random() < 0.88:
            verb, noun = rng.choice(verbs), rng.choice(nouns)
            name = f"gcloud_alpha_compute_{noun}_{verb}_{i}"
            text = f"{verb} Compute Engine {noun.replace('-', ' ')} in project {i % 97}"
            tag = "gcloud"
        else:
            tag = rng.choice(tails[: 1 + rng.randrange(len(tails))])
            name = f"{tag}-{rng.choice(nouns)}-{i}"
            text = f"{tag} manual page about {rng.choice(nouns)} number {i % 13}"
        rows.append({"id": f"{name}(1)", "output": text, "tag": tag})
    return rows
