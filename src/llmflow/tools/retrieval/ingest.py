"""``llmflow index add``: files into an index (chunk, embed, store), unchanged files skipped."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.tools.retrieval.chunking import expand, file_chunks
from llmflow.tools.retrieval.store import Index, IndexError_, index_file, sha256_of


@dataclass
class AddReport:
    index: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source -> why
    chunks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def source_name(path: Path) -> str:
    """How a file is named in results: relative to the current directory when inside it."""
    p = path.resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def add_paths(
    index_dir: Path,
    name: str,
    paths: list[str],
    *,
    embed_model: str | None,
    fields: list[str] | None = None,
    chunk_size: int = 1200,
    overlap: int = 150,
    env: Any = None,
    progress: Callable[[str], None] | None = None,
) -> AddReport:
    """Index ``paths`` into ``name`` (created with ``embed_model`` if new; ``"none"`` for
    BM25 only). Raises IndexError_ when nothing can be read or the model differs."""
    from llmflow.providers.embeddings import embed

    files, missing = expand(paths)
    if missing:
        raise IndexError_(
            f"no such file or directory: {', '.join(missing)}",
            hint="give files or directories of text, Markdown, PDF, CSV or JSONL",
        )
    if not files:
        raise IndexError_(
            "no supported files found",
            hint="supported: .txt .md .pdf .csv .jsonl (directories are searched recursively)",
        )
    if index_file(index_dir, name).exists():
        idx = Index.open(index_dir, name)
        if embed_model is not None and (idx.embed_model or "none") != (
            embed_model if embed_model.lower() != "none" else "none"
        ):
            idx.close()
            raise IndexError_(
                f"index {name!r} was made with embedding model {idx.embed_model or 'none'}, not {embed_model}",
                hint=f"remove it with `llmflow index remove {name}` to change the model",
            )
    else:
        choice = embed_model or _default_model(env)
        model = None if choice.lower() == "none" else choice
        dims = len(embed(["dimension probe"], model, env=env)[0]) if model else None
        idx = Index.create(index_dir, name, model, dims)
    report = AddReport(name)
    try:
        for f in files:
            src = source_name(f)
            try:
                chunks = [
                    c
                    for c in file_chunks(f, size=chunk_size, overlap=overlap, fields=fields)
                    if c.text.strip()
                ]
            except (ValueError, OSError) as exc:
                report.skipped[src] = str(exc)
                continue
            if not chunks:
                report.skipped[src] = "no text"
                continue
            digest = sha256_of(f) + f":{chunk_size}:{overlap}:{','.join(fields or [])}"
            row = idx.conn.execute("SELECT sha256 FROM documents WHERE source = ?", (src,)).fetchone()
            if row is not None and row[0] == digest:
                report.unchanged.append(src)
                continue
            vectors = (
                embed(
                    [f"{c.title}\n{c.text}" if c.title else c.text for c in chunks], idx.embed_model, env=env
                )
                if idx.embed_model
                else None
            )
            outcome = idx.add(src, digest, chunks, vectors)
            getattr(report, outcome).append(src)
            report.chunks += len(chunks)
            if progress is not None:
                progress(f"{outcome}: {src} ({len(chunks)} chunks)")
    finally:
        idx.close()
    return report


def _default_model(env: Any) -> str:
    e = env if env is not None else os.environ
    return e.get("LLMFLOW_EMBED_MODEL") or "local:all-minilm-l6-v2"
