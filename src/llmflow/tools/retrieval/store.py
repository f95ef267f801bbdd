"""A named index: one SQLite file, ``<home>/.llmflow/indexes/<name>.db`` (or
``$LLMFLOW_INDEX_DIR``), whatever the run store is (SQLite or Postgres): FTS5 and sqlite-vec
are SQLite features, and an index is read-mostly data built from files on this machine.

Tables: ``documents`` (source, sha256), ``chunks`` (text, title, chunk number), the FTS5
table ``chunks_fts`` (BM25, porter stemming) and the sqlite-vec table ``chunks_vec`` (one
embedding per chunk, cosine distance). The embedding model is chosen when the index is made
(``embed_model`` in ``meta``) and used for every query; ``none`` makes a BM25-only index.

Hybrid ranking is reciprocal rank fusion: each hit scores ``sum(1 / (60 + rank))`` over the
BM25 and the vector rankings (each taken ``4 * top_k`` deep).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import LlmflowError

RRF_K = 60
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
INSTALL_LINE = "pip install 'llmflow[retrieval]'"


class IndexError_(LlmflowError):
    """A problem with a retrieval index (name, file, extension, model)."""


def index_file(index_dir: Path, name: str) -> Path:
    return Path(index_dir) / f"{name}.db"


def check_name(name: str) -> None:
    if not NAME.match(name or ""):
        raise IndexError_(
            f"index name {name!r} is not allowed", hint="use letters, digits, '_' and '-' (up to 64)"
        )


def _connect(path: Path) -> Any:
    """A DB-API connection that can load sqlite-vec: the standard ``sqlite3`` when its build
    allows extensions, else ``sqlean.py`` (an sqlite3 drop-in that does; in the extra)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3.connect(str(path), timeout=30), True
    try:
        import sqlean

        return sqlean.connect(str(path), timeout=30), True
    except ImportError:
        return sqlite3.connect(str(path), timeout=30), False


def _load_vec(conn: Any, can_load: bool) -> bool:
    if not can_load:
        return False
    try:
        import sqlite_vec

        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        return True
    except Exception:  # noqa: BLE001 - missing package or a build that refuses extensions
        return False


def fts_query(text: str) -> str:
    """Free text as an FTS5 query: every word, quoted, OR-ed (BM25 ranks by how many match)."""
    words = re.findall(r"\w+", text.lower())
    stop = {
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "is",
        "and",
        "or",
        "for",
        "on",
        "how",
        "do",
        "i",
        "what",
        "my",
        "can",
        "does",
        "it",
        "be",
        "with",
        "you",
        "your",
    }
    keep = [w for w in words if w not in stop] or words
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(keep))


@dataclass
class Hit:
    source: str
    chunk: int
    text: str
    score: float
    title: str = ""
    bm25: float | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "source": self.source,
            "chunk": self.chunk,
            "title": self.title,
            "text": self.text,
            "score": round(self.score, 6),
        }
        if self.bm25 is not None:
            d["bm25"] = round(self.bm25, 4)
        if self.similarity is not None:
            d["similarity"] = round(self.similarity, 4)
        return d


class Index:
    """One index file. Open with :meth:`open` (existing) or :meth:`create`."""

    def __init__(self, path: Path, conn: Any, vec: bool) -> None:
        self.path = path
        self.conn = conn
        self.vec = vec
        self.meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def embed_model(self) -> str | None:
        m = self.meta.get("embed_model")
        return None if m in (None, "none") else str(m)

    @classmethod
    def open(cls, index_dir: Path, name: str) -> Index:
        check_name(name)
        path = index_file(index_dir, name)
        if not path.exists():
            raise IndexError_(
                f"retrieval index {name!r} does not exist ({path})",
                hint=f"create it with `llmflow index add {name} PATH...`",
            )
        conn, can_load = _connect(path)
        idx = cls(path, conn, _load_vec(conn, can_load))
        if idx.embed_model and not idx.vec:
            raise IndexError_(
                f"index {name!r} has embeddings but sqlite-vec cannot be loaded here: {INSTALL_LINE}",
                hint=INSTALL_LINE,
            )
        return idx

    @classmethod
    def create(cls, index_dir: Path, name: str, embed_model: str | None, dims: int | None) -> Index:
        check_name(name)
        path = index_file(index_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn, can_load = _connect(path)
        vec = _load_vec(conn, can_load)
        if embed_model and not vec:
            conn.close()
            path.unlink(missing_ok=True)
            raise IndexError_(
                f"embeddings need the sqlite-vec extension, which cannot be loaded here: {INSTALL_LINE}",
                hint=f"{INSTALL_LINE}, or make a BM25-only index with --embed-model none",
            )
        with conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS documents (id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL, added_at REAL NOT NULL, chunks INTEGER NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE, chunk INTEGER NOT NULL, title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, title, content='chunks', content_rowid='id', tokenize='porter unicode61')"
            )
            if embed_model:
                conn.execute(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vec USING vec0(embedding float[{int(dims or 0)}] distance_metric=cosine)"
                )
            for k, v in (("embed_model", embed_model or "none"), ("dims", dims), ("created_at", time.time())):
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (k, json.dumps(v)))
        return cls(path, conn, vec)

    def close(self) -> None:
        self.conn.close()

    # -- writing ------------------------------------------------------------------------------
    def add(self, source: str, content_sha: str, chunks: list[Any], vectors: list[list[float]] | None) -> str:
        """Add (or replace) one document's chunks. Returns "added", "updated" or "unchanged"."""
        row = self.conn.execute("SELECT id, sha256 FROM documents WHERE source = ?", (source,)).fetchone()
        if row is not None and row[1] == content_sha:
            return "unchanged"
        with self.conn:
            if row is not None:
                self._delete(row[0])
            cur = self.conn.execute(
                "INSERT INTO documents (source, sha256, added_at, chunks) VALUES (?, ?, ?, ?)",
                (source, content_sha, time.time(), len(chunks)),
            )
            doc_id = cur.lastrowid
            for n, ch in enumerate(chunks):
                cid = self.conn.execute(
                    "INSERT INTO chunks (doc_id, chunk, title, text) VALUES (?, ?, ?, ?)",
                    (doc_id, n, ch.title, ch.text),
                ).lastrowid
                self.conn.execute(
                    "INSERT INTO chunks_fts (rowid, text, title) VALUES (?, ?, ?)", (cid, ch.text, ch.title)
                )
                if vectors is not None:
                    import sqlite_vec

                    self.conn.execute(
                        "INSERT INTO chunks_vec (rowid, embedding) VALUES (?, ?)",
                        (cid, sqlite_vec.serialize_float32(vectors[n])),
                    )
        return "updated" if row is not None else "added"

    def _delete(self, doc_id: int) -> None:
        for cid, title, text in self.conn.execute(
            "SELECT id, title, text FROM chunks WHERE doc_id = ?", (doc_id,)
        ).fetchall():
            self.conn.execute(
                "INSERT INTO chunks_fts (chunks_fts, rowid, text, title) VALUES ('delete', ?, ?, ?)",
                (cid, text, title),
            )
            if self.embed_model:
                self.conn.execute("DELETE FROM chunks_vec WHERE rowid = ?", (cid,))
        self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self.conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    # -- reading ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        docs = self.conn.execute("SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM documents").fetchone()
        return {
            "name": self.name,
            "path": str(self.path),
            "documents": docs[0],
            "chunks": docs[1],
            "embed_model": self.embed_model or "none",
            "dims": self.meta.get("dims"),
        }

    def documents(self) -> list[dict[str, Any]]:
        return [
            {"source": s, "chunks": c, "sha256": h, "added_at": t}
            for s, c, h, t in self.conn.execute(
                "SELECT source, chunks, sha256, added_at FROM documents ORDER BY source"
            )
        ]

    def _rows(self, ids: list[int]) -> dict[int, tuple[str, int, str, str]]:
        if not ids:
            return {}
        q = ",".join("?" * len(ids))
        sql = f"SELECT c.id, d.source, c.chunk, c.title, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({q})"
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.conn.execute(sql, ids)}

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        q = fts_query(query)
        if not q:
            return []
        rows = self.conn.execute(
            "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (q, k),
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]  # FTS5's bm25 is lower-is-better

    def nearest(self, vector: list[float], k: int) -> list[tuple[int, float]]:
        import sqlite_vec

        rows = self.conn.execute(
            "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (sqlite_vec.serialize_float32(vector), k),
        ).fetchall()
        return [(int(r[0]), 1.0 - float(r[1])) for r in rows]

    def search(self, query: str, top_k: int = 5, mode: str = "hybrid", *, env: Any = None) -> list[Hit]:
        """The best ``top_k`` chunks for ``query`` by ``mode``: bm25, vector or hybrid."""
        if mode != "bm25" and not self.embed_model:
            mode = "bm25"  # an index without embeddings answers by BM25 alone
        depth = max(top_k * 4, 20)
        lexical = self.bm25(query, depth) if mode in ("bm25", "hybrid") else []
        semantic: list[tuple[int, float]] = []
        if mode in ("vector", "hybrid"):
            from llmflow.providers.embeddings import embed

            semantic = self.nearest(embed([query], self.embed_model, env=env)[0], depth)
        scores: dict[int, float] = {}
        b = dict(lexical)
        s = dict(semantic)
        if mode == "bm25":
            scores = b
        elif mode == "vector":
            scores = s
        else:
            for ranking in (lexical, semantic):
                for rank, (cid, _) in enumerate(ranking, 1):
                    scores[cid] = scores.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(scores, key=lambda c: -scores[c])[:top_k]
        rows = self._rows(best)
        return [
            Hit(rows[c][0], rows[c][1], rows[c][3], scores[c], rows[c][2], b.get(c), s.get(c))
            for c in best
            if c in rows
        ]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_indexes(index_dir: Path) -> list[str]:
    d = Path(index_dir)
    return sorted(p.stem for p in d.glob("*.db")) if d.is_dir() else []
