"""Synthesis methods. Each is a public function: DataFrame/JSONL/list in, DataFrame out,
with an optional `out=` JSONL path that a re-run resumes."""

from forgekit.methods.magpie import magpie

__all__ = ["magpie"]
