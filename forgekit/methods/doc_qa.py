"""Grounded question/answer pairs from local documents.

Documents (.txt, .md and, through pypdf, .pdf) are cut into paragraph-aware chunks with
overlap; the model writes question/answer pairs for each chunk and quotes the sentence that
supports each answer. Every record cites where it came from: source file, chunk id and
index, the chunk's character offsets in the document, the chunk text, and the evidence
quote with its own offsets when it is found verbatim (`grounded`).

A file that cannot be used — empty, binary, not UTF-8, an unreadable or text-less PDF — is
refused with an error naming it; the other files go on. Such errors are listed in
`df.attrs['forgekit']['file_errors']` and appended to the run's errors file.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import add_model_option, add_run_options
from forgekit.data.io import jsonl_line
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.engine import RunContext
from forgekit.engine.store import sidecar
from forgekit.errors import ConfigError, ForgeError
from forgekit.methods._common import split_run_options
from forgekit.methods._text import (
    Chunk,
    add_sampling_options,
    call_options,
    chunk_text,
    frame,
    map_records,
    parse_labeled,
    sampling,
    strip_quotes,
    with_seed,
)
from forgekit.models import SamplingParams

EXTENSIONS = (".txt", ".md", ".markdown", ".pdf")

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


class DocumentError(ForgeError):
    """A document that cannot be read as text; the message names the file."""


@dataclass(frozen=True)
class Document:
    path: Path
    name: str  # as cited: relative to the folder it was found in
    text: str


def read_document(path: Path) -> str:
    """The text of one .txt/.md/.pdf file, or DocumentError saying why not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise DocumentError(f"{path}: empty file")
    if path.suffix.lower() == ".pdf":
        return _read_pdf(path)
    if b"\x00" in raw[:8192]:
        raise DocumentError(f"{path}: binary file (NUL bytes), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            f"convert it to UTF-8"
        ) from None
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise DocumentError(f"{path}: no text (only whitespace)")
    return text


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{path}: encrypted PDF (needs a password)")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise DocumentError(f"{path}: unreadable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise DocumentError(f"{path}: no extractable text in the PDF (a scanned image?)")
    return text


def find_documents(sources: Any) -> list[tuple[Path, str]]:
    """(path, cited name) for a folder (searched recursively), a file, or a list of them."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found: list[tuple[Path, str]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in EXTENSIONS:
                    found.append((file, file.relative_to(path).as_posix()))
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise ConfigError(f"{path}: no such file or folder")
    if not found:
        raise ConfigError(f"no {', '.join(EXTENSIONS)} files in {', '.join(map(str, sources))}")
    return found


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


def locate(evidence: str, chunk: Chunk) -> tuple[int, int] | None:
    """Document offsets of the evidence quote when the chunk holds it verbatim (ignoring
    case and runs of whitespace); None otherwise."""
    if not evidence:
        return None
    words = evidence.split()
    pattern = r"\s+".join(re.escape(w) for w in words)
    match = re.search(pattern, chunk.text, re.IGNORECASE)
    if match is None:
        return None
    return chunk.start + match.start(), chunk.start + match.end()


def doc_qa(
    data: Any,
    *,
    model: Any = None,
    chunk_size: int = 1000,
    chunk_overlap: int = 200,
    chunk_unit: str = "chars",
    min_chunk_chars: int = 50,
    questions_per_chunk: int = 2,
    require_evidence: bool = False,
    params: SamplingParams | dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Grounded QA records from documents; returns a DataFrame.

    - `data`: a folder (searched recursively for .txt, .md, .pdf), a file, or a list.
    - `chunk_size` / `chunk_overlap` in `chunk_unit` ('chars' or 'words'); chunks break at
      sentences and prefer paragraph breaks. Chunks under `min_chunk_chars` are skipped.
    - `questions_per_chunk`: pairs asked for per chunk (one request per chunk).
    - `require_evidence`: drop pairs whose evidence quote is not in the chunk verbatim.
    - `params`: sampling (default T=0.3, 768 tokens).
    Records: `input` question, `output` answer, `metadata` with source, chunk_id,
    chunk_index, char_start/char_end, chunk, evidence (+ offsets), grounded, citation.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"doc_qa() got unexpected option(s): {', '.join(sorted(rest))}")
    if questions_per_chunk < 1:
        raise ConfigError(f"questions_per_chunk must be >= 1, got {questions_per_chunk}")
    files = find_documents(data)
    documents: list[Document] = []
    file_errors: list[dict[str, str]] = []
    for path, name in files:
        try:
            documents.append(Document(path, name, read_document(path)))
        except DocumentError as exc:
            file_errors.append({"file": str(path), "error": str(exc)})
    items = []
    for doc in documents:
        for chunk in chunk_text(doc.text, chunk_size, chunk_overlap, chunk_unit):
            if len(chunk.text.strip()) < min_chunk_chars:
                continue
            for q in range(questions_per_chunk):
                items.append({"doc": doc, "chunk": chunk, "q": q})
    from forgekit.models import get_model

    main_model = get_model(model)
    sample = sampling({"temperature": 0.3, "max_tokens": 768}, params)
    job = {
        "method": "doc_qa",
        "model": main_model.identity,
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "chunk_unit": chunk_unit,
        "min_chunk_chars": min_chunk_chars,
        "questions_per_chunk": questions_per_chunk,
        "require_evidence": require_evidence,
        "params": sample.to_dict(),
        "seed": seed,
    }
    template_hash = fingerprint(PROMPT, 12)
    filtered: Counter[str] = Counter()
    pending: dict[str, asyncio.Task] = {}  # one request per chunk, shared by its pairs

    async def ask(ctx: RunContext, doc: Document, chunk: Chunk, chunk_id: str) -> Any:
        prompt = PROMPT.format(k=questions_per_chunk, source=doc.name, passage=chunk.text)
        return await ctx.chat(
            [{"role": "user", "content": prompt}],
            params=with_seed(sample, seed, chunk.index, int(fingerprint(doc.name, 6), 16)),
        )

    async def produce(ctx: RunContext, index: int, item: dict[str, Any]) -> dict | None:
        doc, chunk, q = item["doc"], item["chunk"], item["q"]
        chunk_id = f"{doc.name}#{chunk.index}"
        if chunk_id not in pending:
            pending[chunk_id] = asyncio.ensure_future(ask(ctx, doc, chunk, chunk_id))
        try:
            answer = await asyncio.shield(pending[chunk_id])
        except BaseException:
            pending.pop(chunk_id, None)  # let the chunk's next pair try again
            raise
        pairs = parse_qa_pairs(answer.text)
        if q >= len(pairs):
            filtered["no_pair_parsed"] += 1
            return None
        pair = pairs[q]
        where = locate(pair["evidence"], chunk)
        if require_evidence and where is None:
            filtered["ungrounded"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=pair["question"],
            output=pair["answer"],
            metadata={
                "source": doc.name,
                "path": str(doc.path),
                "chunk_id": chunk_id,
                "chunk_index": chunk.index,
                "char_start": chunk.start,
                "char_end": chunk.end,
                "chunk": chunk.text,
                "qa_index": q,
                "evidence": pair["evidence"] or None,
                "evidence_start": where[0] if where else None,
                "evidence_end": where[1] if where else None,
                "grounded": where is not None,
                "citation": f"{chunk_id} [{chunk.start}:{chunk.end}]",
            },
            lineage=make_lineage(
                "doc_qa",
                main_model.name,
                template_hash=template_hash,
                params=sample.to_dict(),
                seed=seed,
                index=index,
                document=fingerprint(doc.text, 16),
            ),
        )

    # Stable ids: a chunk is identified by its file, offsets and text, not by list position.
    keyed = [
        {
            "doc": it["doc"],
            "chunk": it["chunk"],
            "q": it["q"],
            "key": [it["doc"].name, it["chunk"].start, it["chunk"].end, it["q"]],
        }
        for it in items
    ]
    result = map_records(
        "doc_qa",
        [{"key": it["key"]} for it in keyed],
        lambda ctx, i, _: produce(ctx, i, keyed[i]),
        job=job,
        model=model,
        out=out,
        config=config,
        limit=n,
    )
    errors = _report_file_errors(file_errors, out, job)
    return frame(
        result,
        filtered=dict(filtered),
        file_errors=file_errors,
        documents=len(documents),
        chunks=len({(it["doc"].name, it["chunk"].index) for it in items}),
        errors_file=errors,
    )


def _report_file_errors(
    file_errors: list[dict[str, str]], out: str | Path | None, job: dict[str, Any]
) -> str | None:
    """Append refused files to the run's errors file, in the engine's entry format."""
    if not file_errors or out is None:
        return None
    path = sidecar(Path(out), "errors")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(path, "a", encoding="utf-8") as handle:
        for entry in file_errors:
            handle.write(
                jsonl_line(
                    {
                        "id": record_id("doc_qa/file", job, 0) + ":" + entry["file"],
                        "task": {"file": entry["file"]},
                        "error": "DocumentError",
                        "message": entry["error"],
                        "time": now,
                    }
                )
            )
    return str(path)


# --- the `forge doc-qa` command ------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return doc_qa(
        args.paths,
        model=args.model,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        chunk_unit=args.chunk_unit,
        min_chunk_chars=args.min_chunk_chars,
        questions_per_chunk=args.questions,
        require_evidence=args.require_evidence,
        **call_options(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doc-qa",
        aliases=["doc_qa"],
        help="grounded question/answer pairs from .txt/.md/.pdf documents",
        description="Chunk documents (paragraph-aware, with overlap) and write question/answer "
        "pairs per chunk that cite the source file, chunk id and character offsets. "
        "Unreadable or empty files are reported and skipped.",
    )
    p.add_argument("paths", nargs="+", help="folders (searched recursively) and/or files")
    add_model_option(p)
    p.add_argument("--chunk-size", type=int, default=1000, help="chunk size (1000)")
    p.add_argument("--chunk-overlap", type=int, default=200, help="overlap between chunks (200)")
    p.add_argument(
        "--chunk-unit", choices=["chars", "words"], default="chars", help="unit of the sizes"
    )
    p.add_argument(
        "--min-chunk-chars", type=int, default=50, help="skip chunks shorter than this (50)"
    )
    p.add_argument("--questions", type=int, default=2, help="QA pairs per chunk (2)")
    p.add_argument(
        "--require-evidence",
        action="store_true",
        help="drop pairs whose evidence quote is not found verbatim in the chunk",
    )
    p.add_argument("-n", type=int, default=None, help="at most this many QA records")
    add_sampling_options(p, temperature=0.3, max_tokens=768)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
