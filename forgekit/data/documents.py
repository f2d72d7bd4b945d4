"""Documents to read as text: .txt, .md and, through pypdf, .pdf files, found in folders
(recursively) or named one by one. A file that cannot be used — empty, binary, not UTF-8,
an unreadable or text-less PDF — raises DocumentError naming it and saying why, so a caller
can refuse that file and go on with the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError, ForgeError

EXTENSIONS = (".txt", ".md", ".markdown", ".pdf")


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
