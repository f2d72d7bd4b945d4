"""Synthesis methods. Each is a public function: DataFrame/JSONL/list in, DataFrame out,
with an optional `out=` JSONL path that a re-run resumes."""

from forgekit.methods.cascade import cascade
from forgekit.methods.cosmopedia import cosmopedia
from forgekit.methods.doc_qa import doc_qa
from forgekit.methods.dpo import dpo
from forgekit.methods.evol import evol
from forgekit.methods.generate import generate
from forgekit.methods.judge import judge
from forgekit.methods.magpie import magpie
from forgekit.methods.reasoning import reasoning
from forgekit.methods.self_instruct import self_instruct
from forgekit.methods.translate import rewrite, translate
from forgekit.methods.vote import vote

__all__ = [
    "cascade",
    "cosmopedia",
    "doc_qa",
    "dpo",
    "evol",
    "generate",
    "judge",
    "magpie",
    "reasoning",
    "rewrite",
    "self_instruct",
    "translate",
    "vote",
]
