"""Tokens per second on the embedded model: llmflow vs llama-cpp-python directly.

Run: python bench/local_model.py [--reps 7] [--max-tokens 128] [--console]

The aim (issue 10 item 6) is a 128-token answer through a whole llmflow run at 95% of
llama-cpp-python's own tokens/s. Both paths get the same prompt (llmflow's prompt frame,
built from the messages the run recorded in LLM_GENERATING), the same completion options
(``_completion_options``: temperature 0, the frame's stop sequences, max_tokens) and a model
loaded with the same settings (``llama_settings``: n_ctx, n_threads, n_batch). The question
asks for a long list on one line, so the 270M base model does not reach the frame's stop
sequences (a blank line, "Question:") and generates ``--max-tokens`` tokens on both paths;
the script prints each path's token count, finish reason and whether the two answers are
the same text, so a reader can check.

The reps are interleaved (direct, llmflow, direct, llmflow, ...) so machine load hits both
alike; the load average is printed next to each pair. A direct rep times one streamed
completion (prompt evaluation included); an llmflow rep times a whole run: creating it,
orchestration, every event in SQLite, the streamed completion. The llmflow rows also give
the run's fixed cost (the whole run minus the generation time LLM_DONE records).
``--console`` adds a third interleaved path: llmflow with the console view rendering every
stored chunk."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from llmflow.cli.render import ConsoleView
from llmflow.model.loader import parse_flow_text
from llmflow.providers.base import ChatMessage, ModelRequest
from llmflow.providers.local import (
    DEFAULT_CONTEXT,
    _completion_options,
    build_prompt,
    gemma_model_path,
    llama_settings,
)
from llmflow.runtime import build_runtime

# A long list on one line: no blank line, no "Question:", so no stop sequence ends it early.
QUESTION = "List the numbers from 1 to 300 on one line, separated by commas: 1, 2, 3, ..."


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class Direct:
    """llama-cpp-python called directly: one Llama, one streamed completion per rep."""

    def __init__(self, messages: list[ChatMessage], params: dict[str, Any]) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(gemma_model_path()), **llama_settings(DEFAULT_CONTEXT))
        self.prompt = build_prompt(messages)
        self.options = _completion_options(llama_cpp, ModelRequest("gemma3-270m", messages, params))

    def rep(self) -> tuple[int, int, str, float, str]:
        """(tokens counted like llmflow's LLM_DONE, streamed pieces, finish, seconds, text)."""
        t0 = time.perf_counter()
        pieces = []
        finish = None
        for out in self.llm.create_completion(self.prompt, stream=True, **self.options):
            choice = out["choices"][0]
            if choice.get("text"):
                pieces.append(choice["text"])
            finish = choice.get("finish_reason") or finish
        wall = time.perf_counter() - t0
        text = "".join(pieces).strip()
        n = len(self.llm.tokenize(text.encode("utf-8"), add_bos=False))
        return n, len(pieces), str(finish), wall, text


class ThroughLlmflow:
    """A whole llmflow run per rep, events in SQLite, on the runtime's embedded provider."""

    def __init__(self, home: Path, max_tokens: int) -> None:
        params = {"max_tokens": max_tokens, "temperature": 0}
        self.params = params
        self.flow = parse_flow_text(
            "name: tps\nsteps:\n  - id: a\n    llm: "
            + json.dumps({"prompt": QUESTION, "params": params})
            + "\n"
        )
        self.loop_cpu: list[float] = []
        self.rt = build_runtime(env={"LLMFLOW_MODEL": "local:gemma3-270m"}, home=home)

    async def rep(self, render: bool) -> tuple[int, int, str, float, float, str, list[Any]]:
        """(output tokens, stored LLM_TOKENS events, finish, run seconds, generation seconds,
        text, events)."""
        subscribers = [ConsoleView(live=False, stream=io.StringIO()).on_event] if render else []
        t0, c0 = time.perf_counter(), time.thread_time()
        rec = self.rt.create_run(self.flow)
        await self.rt.execute(rec.id, subscribers=subscribers)
        wall = time.perf_counter() - t0  # the whole run: creation, orchestration, events, SQLite
        self.loop_cpu.append(time.thread_time() - c0)  # the event loop's own CPU during the run
        events = list(self.rt.store.events(rec.id))
        done = next(e for e in events if e.type == "LLM_DONE")
        chunks = [e for e in events if e.type == "LLM_TOKENS"]
        text = "".join(e.payload["text"] for e in chunks).strip()
        status = next(e for e in reversed(events) if e.type.startswith("RUN_")).type
        return (
            done.payload["usage"]["output_tokens"],
            len(chunks),
            status,
            wall,
            float(done.payload["duration"]),
            text,
            events,
        )

    def messages(self, events: list[Any]) -> list[ChatMessage]:
        gen = next(e for e in events if e.type == "LLM_GENERATING")
        return [ChatMessage(m["role"], m["content"]) for m in gen.payload["messages"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--console", action="store_true", help="also time llmflow with the console view")
    a = ap.parse_args()

    print(f"load average at start: {load()}  (cores: {os.cpu_count()})")
    print(f"model settings on both paths: {llama_settings(DEFAULT_CONTEXT)}")
    with tempfile.TemporaryDirectory() as home:
        flow = ThroughLlmflow(Path(home), a.max_tokens)

        async def go() -> None:
            # Warm up both: the model loaded, the first completion's one-off costs paid.
            warm = await flow.rep(render=False)
            direct = Direct(flow.messages(warm[6]), flow.params)
            print(f"prompt ({len(direct.llm.tokenize(direct.prompt.encode()))} tokens):")
            print("  " + direct.prompt.replace("\n", "\n  "))
            direct.rep()
            rows: dict[str, list[tuple[int, float, float]]] = {"direct": [], "llmflow": [], "console": []}
            texts: dict[str, set[str]] = {"direct": set(), "llmflow": set(), "console": set()}
            loop_ms: list[float] = []
            print(
                f"\n{'rep':>3}  {'load (1/5/15 min)':<17}  {'direct s':>8} {'tok':>4}  {'llmflow s':>9} "
                f"{'tok':>4} {'gen s':>6} {'fixed ms':>8} {'loop ms':>7} {'chunks':>6}"
                + ("  console s" if a.console else "")
            )
            for i in range(a.reps):
                before = load()
                n, pieces, finish, wall, text = direct.rep()
                rows["direct"].append((n, wall, wall))
                texts["direct"].add(text)
                nq, chunks, status, qwall, gen, qtext, _ = await flow.rep(render=False)
                rows["llmflow"].append((nq, qwall, gen))
                loop_ms.append(flow.loop_cpu[-1] * 1000)
                texts["llmflow"].add(qtext)
                line = (
                    f"{i + 1:>3}  {before:<17}  {wall:8.3f} {n:>4}  {qwall:9.3f} {nq:>4} {gen:6.3f} "
                    f"{(qwall - gen) * 1000:8.1f} {flow.loop_cpu[-1] * 1000:7.1f} {chunks:>6}"
                )
                if a.console:
                    nr, _, _, rwall, rgen, rtext, _ = await flow.rep(render=True)
                    rows["console"].append((nr, rwall, rgen))
                    texts["console"].add(rtext)
                    line += f"  {rwall:9.3f}"
                print(line + f"   [{finish}, {pieces} pieces; run {status}]", flush=True)
            print(f"load average at end: {load()}")
            report(rows, texts)
            print(
                f"the event loop's CPU during a run (median): {statistics.median(loop_ms):.1f} ms"
                " (its thread competes with llama.cpp's threads for the cores and the GIL)"
            )

        asyncio.run(go())
        flow.rt.close()


def report(rows: dict[str, list[tuple[int, float, float]]], texts: dict[str, set[str]]) -> None:
    d_tokens = {n for n, _, _ in rows["direct"]}
    d_rate = statistics.median(n / t for n, t, _ in rows["direct"])
    print(f"\nsame answer text on every rep and path: {len(set().union(*texts.values())) == 1}")
    print(
        f"llama-cpp-python directly : {d_rate:6.1f} tokens/s  median of {len(rows['direct'])};"
        f" {sorted(d_tokens)} tokens per answer, prompt evaluation included;"
        f" median {statistics.median(t for _, t, _ in rows['direct']):.3f} s"
    )
    for key, label in (("llmflow", "through llmflow          "), ("console", "llmflow + console view   ")):
        if not rows[key]:
            continue
        rate = statistics.median(n / t for n, t, _ in rows[key])
        ratios = [
            (n / t) / (dn / dt) for (n, t, _), (dn, dt, _) in zip(rows[key], rows["direct"], strict=False)
        ]
        fixed = statistics.median(t - g for _, t, g in rows[key]) * 1000
        print(
            f"{label}: {rate:6.1f} tokens/s  ({rate / d_rate:.1%} of direct; pairwise median "
            f"{statistics.median(ratios):.1%}); {sorted({n for n, _, _ in rows[key]})} tokens;"
            f" median run {statistics.median(t for _, t, _ in rows[key]):.3f} s, of which generation "
            f"{statistics.median(g for _, _, g in rows[key]):.3f} s and fixed cost {fixed:.0f} ms"
        )


if __name__ == "__main__":
    main()
