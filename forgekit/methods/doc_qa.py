"""Grounded question/answer pairs from local documents.

Documents (.txt, .md and, through pypdf, .pdf) are cut into paragraph-aware chunks with
overlap; the model writes question/answer pairs for each chunk and quotes the sentence that
supports each answer. Every record cites where it came from: source file, chunk id and
index, the chunk's character offsets in the document, the chunk text, and the evidence
quote with its own offsets when it is found verbatim (`grounded`).

A file that cannot be used — empty, binary, not UTF-8, an unreadable or text-less PDF — is
refused with an error naming it; the other files go on. Such errors are listed in
`df.attrs['forgekit']['file_errors']` and in the run's errors (and errors file).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from forgekit.data.documents import Document, DocumentError, find_documents, read_document
from forgekit.data.records import fingerprint, make_record
from forgekit.data.text import Chunk, chunk_text, find_quote
from forgekit.engine import RunContext
from forgekit.methods.parsing import parse_labeled, strip_quotes
from forgekit.methods.prompting import chat_messages
from forgekit.methods.samplers import with_seed
from forgekit.methods.spec import Method, option, sampling
from forgekit.models import Completion, SamplingParams

PROMPT = (
    "Read the passage and write {k} question-answer pairs about it.\n"
    "- Each question must be answerable from the passage alone, and make sense without it "
    "(do not write 'according to the passage').\n"
    "- Each answer must be correct and complete according to the passage.\n"
    "- After each answer, copy word for word the sentence of the passage that supports it.\n\n"
    "Use exactly this format:\n"
    "Question 1: ...\nAnswer 1: ...\nEvidence 1: ...\n\n"
    "Passage (from {source}):\n<passage>\n{passage}\n</passage>"
)
_NUMBERED_LABEL = re.compile(
    r"^([ \t]*[*_#]*[ \t]*(?:question|answer|evidence|q|a))[ \t]*\d+", re.IGNORECASE | re.MULTILINE
)
_QUESTION_START = re.compile(
    r"^[ \t]*[*_#]*[ \t]*(?:question|q)[ \t]*[*_]*[ \t]*[:：]", re.IGNORECASE | re.MULTILINE
)
_QA_LABELS = {
    "question": ("Question", "Q"),
    "answer": ("Answer", "A"),
    "evidence": ("Evidence", "Quote", "Source sentence"),
}


def parse_qa_pairs(text: str) -> list[dict[str, str]]:
    """Question/answer/evidence blocks, in order; a block without both question and answer
    is dropped."""
    text = _NUMBERED_LABEL.sub(r"\1", text)
    starts = [m.start() for m in _QUESTION_START.finditer(text)]
    pairs = []
    for i, start in enumerate(starts):
        block = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)]
        fields = parse_labeled(block, _QA_LABELS)
        question, answer = fields.get("question", "").strip(), fields.get("answer", "").strip()
        if question and answer:
            evidence = strip_quotes(fields.get("evidence", "").strip())
            pairs.append({"question": question, "answer": answer, "evidence": evidence})
    return pairs


@dataclass(frozen=True, kw_only=True)
class DocQAOptions:
    chunk_size: int = option(1000, minimum=1, help="chunk size, in --chunk-unit")
    chunk_overlap: int = option(200, minimum=0, help="overlap between chunks")
    chunk_unit: str = option("chars", choices=("chars", "words"), help="unit of the sizes")
    min_chunk_chars: int = option(50, minimum=0, help="skip chunks shorter than this")
    questions_per_chunk: int = option(
        2,
        minimum=1,
        flag="--questions",
        metavar="QUESTIONS",
        help="QA pairs per chunk, one request",
    )
    require_evidence: bool = option(
        False, help="drop pairs whose evidence quote is not found verbatim in the chunk"
    )
    params: SamplingParams = sampling(temperature=0.3, max_tokens=768, help="each chunk's answer")
    n: int | None = option(None, flag="-n", identity=False, help="at most this many QA records")
    seed: int = option(0, help="base seed")


@dataclass(frozen=True)
class Pair:
    """One QA record to write: pair `q` of the answer for `chunk`."""

    doc: Document
    chunk: Chunk
    q: int

    @property
    def chunk_id(self) -> str:
        return f"{self.doc.name}#{self.chunk.index}"


class DocQA(Method):
    """Chunk documents (paragraph-aware, with overlap) and write question/answer pairs per
    chunk that cite the source file, chunk id and character offsets. Unreadable or empty
    files are reported and skipped. Records: `input` question, `output` answer, `metadata`
    with source, chunk_id, chunk_index, char_start/char_end, chunk, evidence (+ offsets),
    grounded, citation."""

    name = "doc_qa"
    command = "doc-qa"
    help = "grounded question/answer pairs from .txt/.md/.pdf documents"
    Options = DocQAOptions
    inputs = "paths"

    def prepare(self, sources: list[Any]) -> list[Pair]:
        o = self.options
        self.file_errors: list[dict[str, str]] = []
        documents = []
        for path, name in find_documents(sources):
            try:
                documents.append(Document(path, name, read_document(path)))
            except DocumentError as exc:  # the other files go on
                self.file_errors.append({"file": str(path), "error": str(exc)})
                self.input_error({"file": str(path)}, exc)
        chunks = [
            (doc, chunk)
            for doc in documents
            for chunk in chunk_text(doc.text, o.chunk_size, o.chunk_overlap, o.chunk_unit)
            if len(chunk.text.strip()) >= o.min_chunk_chars
        ]
        self.documents, self.chunks = len(documents), len(chunks)
        self.template_hash = fingerprint(PROMPT, 12)
        self.pending: dict[str, asyncio.Future] = {}  # one request per chunk, for all its pairs
        return [Pair(doc, chunk, q) for doc, chunk in chunks for q in range(o.questions_per_chunk)]

    def key(self, pair: Pair) -> Any:
        # A chunk is its file, offsets and text, not its position in the list of files.
        chunk = pair.chunk
        return [pair.doc.name, chunk.start, chunk.end, fingerprint(chunk.text, 16), pair.q]

    async def ask(self, ctx: RunContext, pair: Pair) -> Completion:
        """The chunk's answer: the first of its pairs asks, the others wait for it."""
        o, doc, chunk = self.options, pair.doc, pair.chunk
        if pair.chunk_id not in self.pending:
            prompt = PROMPT.format(k=o.questions_per_chunk, source=doc.name, passage=chunk.text)
            salt = int(fingerprint(doc.name, 6), 16)  # chunk i of each file: another seed
            params = with_seed(o.params, o.seed, chunk.index, salt)
            request = ctx.chat(chat_messages(None, prompt), params=params)
            self.pending[pair.chunk_id] = asyncio.ensure_future(request)
        try:
            return await asyncio.shield(self.pending[pair.chunk_id])
        except BaseException:
            self.pending.pop(pair.chunk_id, None)  # let the chunk's next pair try again
            raise

    async def produce(self, ctx: RunContext, pair: Pair) -> dict[str, Any] | None:
        doc, chunk, q = pair.doc, pair.chunk, pair.q
        pairs = parse_qa_pairs((await self.ask(ctx, pair)).text)
        if q >= len(pairs):
            self.counts["no_pair_parsed"] += 1
            return None
        where = find_quote(chunk.text, pairs[q]["evidence"], offset=chunk.start)
        if self.options.require_evidence and where is None:
            self.counts["ungrounded"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=pairs[q]["question"],
            output=pairs[q]["answer"],
            metadata={
                "source": doc.name,
                "path": str(doc.path),
                "chunk_id": pair.chunk_id,
                "chunk_index": chunk.index,
                "char_start": chunk.start,
                "char_end": chunk.end,
                "chunk": chunk.text,
                "qa_index": q,
                "evidence": pairs[q]["evidence"] or None,
                "evidence_start": where[0] if where else None,
                "evidence_end": where[1] if where else None,
                "grounded": where is not None,
                "citation": f"{pair.chunk_id} [{chunk.start}:{chunk.end}]",
            },
            lineage=self.lineage(
                ctx, index=ctx.task.info.get("index"), document=fingerprint(doc.text, 16)
            ),
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "filtered": dict(self.counts),
            "file_errors": self.file_errors,
            "documents": self.documents,
            "chunks": self.chunks,
        }
