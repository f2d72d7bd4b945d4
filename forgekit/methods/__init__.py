"""Synthesis methods. Each is a public function: DataFrame/JSONL/list in, DataFrame out,
with an optional `out=` JSONL path that a re-run resumes."""

from forgekit.methods.cascade import cascade
from forgekit.methods.dpo import dpo
from forgekit.methods.evol import evol
from forgekit.methods.generate import generate
from forgekit.methods.magpie import magpie
from forgekit.methods.self_instruct import self_instruct
from forgekit.methods.vote import vote

__all__ = ["cascade", "dpo", "evol", "generate", "magpie", "self_instruct", "vote"]
