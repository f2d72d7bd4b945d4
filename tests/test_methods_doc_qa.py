"""doc_qa: paragraph-aware chunks with exact offsets and overlap, QA parsing, citations
(chunk id, offsets, evidence located in the document), refused files reported without
stopping the run, PDF text through pypdf; a real run on the embedded model."""

import itertools

import pytest

from forgekit.cli import main as cli_main
from forgekit.data.text import chunk_text
from forgekit.errors import ConfigError
from forgekit.methods import doc_qa
from forgekit.methods.doc_qa import parse_qa_pairs, read_document
from forgekit.models.scripted import ScriptedModel
from forgekit.runfile import run_file
from tests.conftest import read_jsonl

TIDES = (
    "Tides are the regular rise and fall of the sea. They are caused mainly by the Moon's "
    "gravity pulling on the oceans.\n\n"
    "Most coasts see two high tides and two low tides each day. The time between two high "
    "tides is about 12 hours and 25 minutes.\n\n"
    "Spring tides happen at new and full moon, when the Sun and Moon pull in line. Neap tides "
    "happen at the quarter moons and have the smallest range."
)


def test_chunks_have_exact_offsets_overlap_and_prefer_paragraphs():
    chunks = chunk_text(TIDES, size=200, overlap=80)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert TIDES[chunk.start : chunk.end] == chunk.text and len(chunk.text) <= 200
    # consecutive chunks overlap by whole sentences, never more than `overlap` characters
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start and b.start <= a.end and a.end - b.start <= 80
    # the first chunk ends at the paragraph break, not mid-way into the next paragraph
    assert chunks[0].text.endswith("pulling on the oceans.")
    words = chunk_text(TIDES, size=30, overlap=10, unit="words")
    assert all(len(c.text.split()) <= 30 for c in words)
    long_word_text = "x" * 450  # no boundary at all: hard splits
    assert [len(c.text) for c in chunk_text(long_word_text, 200, 0)] == [200, 200, 50]
    with pytest.raises(ConfigError, match="overlap must be in"):
        chunk_text(TIDES, size=100, overlap=100)


def test_parse_qa_pairs_in_several_shapes():
    text = (
        "Question 1: What causes tides?\nAnswer 1: The Moon's gravity.\n"
        'Evidence 1: "They are caused mainly by the Moon\'s gravity pulling on the oceans."\n\n'
        "**Question 2:** How long between high tides?\n**Answer 2:** About 12 h 25 min.\n\n"
        "Q3: A question without an answer\n"
    )
    assert parse_qa_pairs(text) == [
        {
            "question": "What causes tides?",
            "answer": "The Moon's gravity.",
            "evidence": "They are caused mainly by the Moon's gravity pulling on the oceans.",
        },
        {
            "question": "How long between high tides?",
            "answer": "About 12 h 25 min.",
            "evidence": "",
        },
    ]


def _docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "tides.md").write_text(TIDES, encoding="utf-8")
    (folder / "sub" / "empty.txt").write_text("  \n")
    (folder / "latin1.txt").write_bytes(
        "Caf\xe9 au lait, a sentence long enough.".encode("latin-1")
    )
    (folder / "blob.txt").write_bytes(b"\x89PNG\x00\x00\x00binary")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "ignored.csv").write_text("a,b\n1,2\n")
    return folder


QA_ANSWER = (
    "Question 1: What causes tides?\nAnswer 1: Mainly the Moon's gravity.\n"
    "Evidence 1: They are caused mainly by the Moon's   gravity pulling on the oceans.\n\n"
    "Question 2: What is the sea's regular rise and fall called?\nAnswer 2: Tides.\n"
    "Evidence 2: This sentence is not in the passage."
)


def test_doc_qa_cites_chunks_and_reports_bad_files(stub, stub_model, tmp_path):
    stub.configure(rules=[{"match": "Tides are the regular rise", "content": QA_ANSWER}])
    out = tmp_path / "qa.jsonl"
    df = doc_qa(_docs(tmp_path), model=stub_model, chunk_size=2000, out=out, progress=False)
    info = df.attrs["forgekit"]
    assert info["documents"] == 1 and info["chunks"] == 1
    assert list(df["input"]) == [
        "What causes tides?",
        "What is the sea's regular rise and fall called?",
    ]
    first, second = df.iloc[0]["metadata"], df.iloc[1]["metadata"]
    assert first["source"] == "tides.md" and first["chunk_id"] == "tides.md#0"
    assert (first["char_start"], first["char_end"]) == (0, len(TIDES))
    assert first["chunk"] == TIDES and first["citation"] == f"tides.md#0 [0:{len(TIDES)}]"
    assert first["grounded"] is True
    quote = TIDES[first["evidence_start"] : first["evidence_end"]]
    assert quote == "They are caused mainly by the Moon's gravity pulling on the oceans."
    assert second["grounded"] is False and second["evidence_start"] is None
    assert stub.stats()["requests"] == 1  # both pairs came from one request for the chunk
    # bad files: each refused with a reason naming it; the run went on
    errors = {e["file"].split("/")[-1]: e["error"] for e in info["file_errors"]}
    assert set(errors) == {"empty.txt", "latin1.txt", "blob.txt", "broken.pdf"}
    assert errors["empty.txt"].endswith("empty.txt: empty file")
    assert "latin1.txt: not UTF-8 text (byte 0xe9 at offset 3)" in errors["latin1.txt"]
    assert "blob.txt: binary file" in errors["blob.txt"]
    assert "broken.pdf: unreadable PDF" in errors["broken.pdf"]
    logged = read_jsonl(tmp_path / "qa.errors.jsonl")
    assert {e["error"] for e in logged} == {"DocumentError"} and len(logged) == 4
    # resume: nothing new to ask
    again = doc_qa(
        _docs(tmp_path), model=stub_model, chunk_size=2000, out=out, progress=False, cache=False
    )
    assert stub.stats()["requests"] == 1 and list(again["id"]) == list(df["id"])
    grounded = doc_qa(
        tmp_path / "docs" / "tides.md",
        model=stub_model,
        chunk_size=2000,
        require_evidence=True,
        progress=False,
    )
    assert list(grounded["input"]) == ["What causes tides?"]
    assert grounded.attrs["forgekit"]["filtered"] == {"ungrounded": 1}


def test_pdf_text_is_read(tmp_path):
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 20 100 Td (Tides follow the Moon.) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(stream)
    path = tmp_path / "note.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    assert "Tides follow the Moon." in read_document(path)


def test_cli(stub, stub_model, tmp_path, capsys):
    assert cli_main(["doc-qa", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--chunk-size",
        "--chunk-overlap",
        "--chunk-unit",
        "--questions",
        "--require-evidence",
        "--min-chunk-chars",
    ):
        assert option in text
    stub.configure(rules=[{"match": "Tides are the regular rise", "content": QA_ANSWER}])
    out = tmp_path / "o.jsonl"
    folder = _docs(tmp_path)
    assert (
        cli_main(
            [
                "doc-qa",
                str(folder),
                "-m",
                "stub",
                "--chunk-size",
                "2000",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_jsonl(out)[0]["metadata"]["chunk_id"] == "tides.md#0"
    (tmp_path / "void").mkdir()
    with pytest.raises(ConfigError, match="no .txt, .md, .markdown, .pdf files in"):
        doc_qa(tmp_path / "void", model=stub_model)
    with pytest.raises(ConfigError, match="nowhere: no such file or folder"):
        doc_qa(folder / "nowhere", model=stub_model)


def test_a_run_file_reads_a_folder_of_documents(tmp_path):
    _docs(tmp_path)
    config = tmp_path / "qa.yaml"
    config.write_text(
        "method: doc_qa\ninput: docs\nparams: {chunk_size: 2000, questions_per_chunk: 1}\n"
    )
    model = ScriptedModel([(r"Tides are the regular rise", QA_ANSWER)])
    df = run_file(config, model=model, progress=False)
    assert list(df["input"]) == ["What causes tides?"] and len(model.calls) == 1
    assert model.calls[0]["prompt"].startswith("user: Read the passage and write 1 question")
    assert len(df.attrs["forgekit"]["file_errors"]) == 4
    with pytest.raises(ConfigError, match="no input data: pass files or folders"):
        doc_qa(None, model=model)


@pytest.mark.model
def test_doc_qa_on_local_model(tmp_path):
    text = TIDES.split("\n\n")[0]  # one short paragraph: the prompt stays small
    (tmp_path / "tides.txt").write_text(text)
    df = doc_qa(
        tmp_path,
        model="local",
        chunk_size=2000,
        questions_per_chunk=1,
        params={"max_tokens": 40},
        progress=False,
    )
    info = df.attrs["forgekit"]
    assert info["chunks"] == 1 and info["file_errors"] == []
    # the small model may not follow the format; then the pair is counted, not invented
    assert len(df) + info["filtered"].get("no_pair_parsed", 0) == 1
    for meta in df["metadata"]:
        assert meta["chunk_id"] == "tides.txt#0" and meta["chunk"] == text
