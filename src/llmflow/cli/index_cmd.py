"""`llmflow index ...` (retrieval indexes) and `llmflow threads ...` (conversation threads)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def _services() -> Any:
    from llmflow.settings import Settings
    from llmflow.tools.services import ToolServices

    return ToolServices(Settings.from_env())


def register(app: typer.Typer) -> None:
    if any(g.name == "index" for g in app.registered_groups):
        return
    index = typer.Typer(help="Retrieval indexes: add documents, search, list.", no_args_is_help=True)
    threads = typer.Typer(help="Conversation threads: list and show.", no_args_is_help=True)
    app.add_typer(index, name="index")
    app.add_typer(threads, name="threads")

    @index.command("add")
    def index_add(
        name: Annotated[str, typer.Argument(help="Index name (letters, digits, _ and -)")],
        paths: Annotated[list[str], typer.Argument(help="Files or directories: .txt .md .pdf .csv .jsonl")],
        embed_model: Annotated[
            str | None,
            typer.Option(
                "--embed-model",
                help="provider:model for embeddings, or 'none' for BM25 only (default: $LLMFLOW_EMBED_MODEL or the embedded model); fixed when the index is made",
            ),
        ] = None,
        fields: Annotated[
            str | None,
            typer.Option("--fields", help="CSV/JSONL: comma-separated fields to index (default: all)"),
        ] = None,
        chunk_size: Annotated[
            int, typer.Option("--chunk-size", min=200, max=20000, help="Characters per chunk")
        ] = 1200,
        overlap: Annotated[
            int,
            typer.Option(
                "--overlap", min=0, max=2000, help="Characters repeated when a long paragraph is cut"
            ),
        ] = 150,
        as_json: Json = False,
    ) -> int:
        """Add documents to an index (made on first use); unchanged files are skipped."""
        from llmflow.tools.retrieval.ingest import add_paths

        svc = _services()
        say = (lambda m: print(m, file=sys.stderr)) if not as_json else None
        report = add_paths(
            svc.index_dir,
            name,
            paths,
            embed_model=embed_model,
            fields=[f.strip() for f in fields.split(",")] if fields else None,
            chunk_size=chunk_size,
            overlap=overlap,
            env=dict(svc.env),
            progress=say,
        )
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(
                f"index {name}: {len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, {len(report.skipped)} skipped; {report.chunks} chunks written"
            )
            for src, why in report.skipped.items():
                print(f"  skipped {src}: {why}", file=sys.stderr)
        return 0 if (report.added or report.updated or report.unchanged) else 1

    @index.command("search")
    def index_search(
        name: Annotated[str, typer.Argument(help="Index name")],
        query: Annotated[str, typer.Argument(help="What to look for")],
        top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 5,
        mode: Annotated[str, typer.Option("--mode", help="hybrid | bm25 | vector")] = "hybrid",
        as_json: Json = False,
    ) -> int:
        """Search an index: the best chunks with source, chunk number and score."""
        from llmflow.tools.retrieval_tool import search_index

        if mode not in ("hybrid", "bm25", "vector"):
            raise typer.BadParameter(f"--mode {mode!r}: use hybrid, bm25 or vector")
        svc = _services()
        hits = search_index(svc.index_dir, name, query, top_k, mode, dict(svc.env))
        if as_json:
            print(json.dumps(hits, indent=2, ensure_ascii=False))
            return 0
        if not hits:
            print("no results")
        for i, h in enumerate(hits, 1):
            text = " ".join(h["text"].split())
            print(
                f"{i}. {h['source']}#{h['chunk']}  score {h['score']:.4f}"
                + (f"  [{h['title']}]" if h.get("title") else "")
            )
            print(f"   {text[:200]}{'...' if len(text) > 200 else ''}")
        return 0

    @index.command("list")
    def index_list(as_json: Json = False) -> int:
        """List the indexes of this project."""
        from llmflow.tools.retrieval.store import Index, list_indexes

        svc = _services()
        rows = []
        for n in list_indexes(svc.index_dir):
            idx = Index.open(svc.index_dir, n)
            try:
                rows.append(idx.stats())
            finally:
                idx.close()
        if as_json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no indexes in {svc.index_dir}; make one with `llmflow index add NAME PATH...`")
        else:
            for r in rows:
                print(
                    f"{r['name']:<24} {r['documents']:>5} docs {r['chunks']:>7} chunks  embeddings: {r['embed_model']}"
                )
        return 0

    @index.command("show")
    def index_show(name: Annotated[str, typer.Argument(help="Index name")], as_json: Json = False) -> int:
        """Show an index: its file, embedding model and documents."""
        from llmflow.tools.retrieval.store import Index

        svc = _services()
        idx = Index.open(svc.index_dir, name)
        try:
            data = {**idx.stats(), "documents": idx.documents()}
        finally:
            idx.close()
        if as_json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"index {data['name']}  file {data['path']}  embeddings {data['embed_model']}")
        for d in data["documents"]:
            print(f"  {d['source']}  ({d['chunks']} chunks)")
        return 0

    @index.command("remove")
    def index_remove(name: Annotated[str, typer.Argument(help="Index name")]) -> int:
        """Delete an index file."""
        from llmflow.tools.retrieval.store import IndexError_, check_name, index_file

        check_name(name)
        path = index_file(_services().index_dir, name)
        if not path.exists():
            raise IndexError_(f"no index {name!r}", hint="list them with `llmflow index list`")
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        print(f"removed index {name}")
        return 0

    @threads.command("list")
    def threads_list(limit: Annotated[int, typer.Option("--limit", "-n")] = 50, as_json: Json = False) -> int:
        """List conversation threads, most recently used first."""
        from llmflow.cli.runs_cmd import _runtime

        rows = _runtime().store.list_threads(limit=limit)
        if as_json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print("no threads yet; start one with `llmflow run FLOW --thread NAME`")
        else:
            for r in rows:
                print(
                    f"{r['name']:<32} {r['runs']:>4} runs  last {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['last_at']))}"
                )
        return 0

    @threads.command("show")
    def threads_show(name: Annotated[str, typer.Argument(help="Thread name")], as_json: Json = False) -> int:
        """Show a thread: its runs and every exchange, oldest first."""
        from llmflow.cli.runs_cmd import _runtime
        from llmflow.errors import RunNotFoundError
        from llmflow.tools.threads import thread_view

        view = thread_view(_runtime().store, name)
        if not view["runs"]:
            raise RunNotFoundError(f"no thread {name!r}", hint="list threads with `llmflow threads list`")
        if as_json:
            print(json.dumps(view, indent=2, ensure_ascii=False))
            return 0
        print(f"thread {name}: {len(view['runs'])} runs")
        for m in view["messages"]:
            print(f"[{m['run_id']} {m['step_id']}] user: {m['user']}")
            print(f"[{m['run_id']} {m['step_id']}] {m['agent']}: {m['assistant']}")
        return 0
