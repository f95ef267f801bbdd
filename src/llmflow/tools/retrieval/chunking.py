"""Documents into chunks: text and Markdown by paragraphs under their headings, PDF text by
page, CSV rows and JSONL records one chunk each (the chosen fields as ``field: value``).

Chunks are packed up to ``size`` characters from whole paragraphs; a paragraph longer than
that is cut at sentence (else word) boundaries with ``overlap`` characters repeated."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEXT = {".txt", ".text", ".rst", ".log"}
MARKDOWN = {".md", ".markdown", ".mdx"}
SUFFIXES = TEXT | MARKDOWN | {".pdf", ".csv", ".jsonl", ".ndjson"}
INSTALL_PDF = "pip install 'llmflow[retrieval]'"


@dataclass(frozen=True)
class Chunk:
    text: str
    title: str = ""


def _split_long(text: str, size: int, overlap: int) -> list[str]:
    if len(text) <= size:
        return [text]
    pieces = re.split(r"(?<=[.!?])\s+", text)
    out: list[str] = []
    cur = ""
    for p in pieces:
        while len(p) > size:  # one sentence longer than a chunk: cut at a word
            cut = p.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            pieces_head, p = p[:cut], p[cut:].lstrip()
            if cur:
                out.append(cur)
                cur = ""
            out.append(pieces_head)
        if cur and len(cur) + 1 + len(p) > size:
            out.append(cur)
            cur = cur[-overlap:].split(" ", 1)[-1] + " " + p if overlap else p
        else:
            cur = f"{cur} {p}".strip()
    if cur:
        out.append(cur)
    return out


def pack(paragraphs: list[str], size: int, overlap: int, title: str = "") -> list[Chunk]:
    out: list[Chunk] = []
    cur = ""
    for para in paragraphs:
        para = para.strip()
        if not para:
            continue
        for piece in _split_long(para, size, overlap):
            if cur and len(cur) + 2 + len(piece) > size:
                out.append(Chunk(cur, title))
                cur = piece
            else:
                cur = f"{cur}\n\n{piece}" if cur else piece
    if cur:
        out.append(Chunk(cur, title))
    return out


def markdown_chunks(text: str, size: int, overlap: int) -> list[Chunk]:
    out: list[Chunk] = []
    heads: list[str] = []
    body: list[str] = []

    def flush() -> None:
        if body:
            title = " > ".join(heads)
            out.extend(pack(re.split(r"\n\s*\n", "\n".join(body)), size, overlap, title))
            body.clear()

    for line in text.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            flush()
            level = len(m.group(1))
            heads[:] = heads[: level - 1] + [m.group(2)]
            body.append(m.group(2))  # the heading's words are searchable with its section
        else:
            body.append(line)
    flush()
    return out


def record_text(rec: dict[str, Any], fields: list[str] | None) -> str:
    keys = fields or list(rec)
    return "\n".join(
        f"{k}: {rec[k] if not isinstance(rec[k], dict | list) else json.dumps(rec[k], ensure_ascii=False)}"
        for k in keys
        if k in rec and rec[k] not in (None, "")
    )


def file_chunks(
    path: Path, *, size: int = 1200, overlap: int = 150, fields: list[str] | None = None
) -> Iterator[Chunk]:
    """The chunks of one file; ValueError for a format it cannot read."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN:
        yield from markdown_chunks(path.read_text(encoding="utf-8", errors="replace"), size, overlap)
    elif suffix in TEXT:
        yield from pack(
            re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")), size, overlap
        )
    elif suffix == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:
            raise ValueError(f"reading PDF needs pypdf: {INSTALL_PDF}") from None
        try:
            reader = PdfReader(str(path))
            for i, page in enumerate(reader.pages, 1):
                yield from pack(re.split(r"\n\s*\n", page.extract_text() or ""), size, overlap, f"page {i}")
        except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds for broken files
            raise ValueError(f"cannot read PDF text: {type(exc).__name__}: {exc}") from None
    elif suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            for row in csv.DictReader(f):
                text = record_text(dict(row), fields)
                if text:
                    yield Chunk(text)
    elif suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(io.StringIO(path.read_text(encoding="utf-8", errors="replace")), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {n} is not JSON: {exc}") from None
            text = record_text(rec, fields) if isinstance(rec, dict) else str(rec)
            if text:
                yield Chunk(text)
    else:
        raise ValueError(
            f"unsupported file type {suffix or '(none)'}; supported: {', '.join(sorted(SUFFIXES))}"
        )


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files under ``paths`` (directories recursively, supported types only), and the paths
    that do not exist."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            files.append(p)
        else:
            missing.append(raw)
    return files, missing
