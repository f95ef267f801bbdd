"""Retrieval: document indexes (SQLite FTS5 for BM25, sqlite-vec for embeddings, hybrid
ranking), the ``retrieve`` step and the index tool search them."""
