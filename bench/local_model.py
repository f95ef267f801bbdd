"""Tokens per second on the embedded model: llmflow vs llama-cpp-python directly.

Run: python bench/local_model.py [--reps 5] [--max-tokens 128]

Same prompt (llmflow's own prompt frame), same settings (temperature 0, the same stop
sequences, max_tokens), same loaded model file. Also runs llmflow with the console view
rendering every token, to show rendering does not slow a streaming step."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from llmflow.cli.render import ConsoleView
from llmflow.model.loader import parse_flow_text
from llmflow.providers.base import ChatMessage, ModelRequest
from llmflow.providers.local import _completion_options, build_prompt, gemma_model_path
from llmflow.runtime import build_runtime

QUESTION = "Explain in detail how rain forms, step by step."


def direct(reps: int, max_tokens: int) -> list[float]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gemma_model_path()), n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False
    )
    req = ModelRequest(
        "gemma3-270m", [ChatMessage("user", QUESTION)], {"max_tokens": max_tokens, "temperature": 0}
    )
    prompt = build_prompt(req.messages)
    opts = _completion_options(llama_cpp, req)
    for _out in llm.create_completion(prompt, stream=True, **opts):  # warm up, like llmflow's first run
        pass
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        text = "".join(
            out["choices"][0].get("text") or "" for out in llm.create_completion(prompt, stream=True, **opts)
        ).strip()
        n = len(llm.tokenize(text.encode("utf-8"), add_bos=False))
        rates.append((n, time.perf_counter() - t0))
    llm.close()
    return rates


def through_llmflow(reps: int, max_tokens: int, render: bool) -> list[float]:
    flow = parse_flow_text(
        f"name: tps\nsteps:\n  - id: a\n    llm: {{prompt: '{QUESTION}', params: {{max_tokens: {max_tokens}, temperature: 0}}}}\n"
    )
    with tempfile.TemporaryDirectory() as d:
        rt = build_runtime(env={"LLMFLOW_MODEL": "local:gemma3-270m"}, home=Path(d))
        rates = []

        async def go() -> None:
            await rt.run(flow)  # load the model once, like the direct path
            for _ in range(reps):
                subscribers = [ConsoleView(live=False, stream=io.StringIO()).on_event] if render else []

                rec = rt.create_run(flow)
                t_start = time.perf_counter()
                await rt.execute(rec.id, subscribers=subscribers)
                wall = time.perf_counter() - t_start  # the whole run: orchestration, events, SQLite
                done = next(e for e in rt.store.events(rec.id) if e.type == "LLM_DONE")
                rates.append((done.payload["usage"]["output_tokens"], wall))

        asyncio.run(go())
        rt.close()
        return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    a = ap.parse_args()

    def rate(samples: list[tuple[int, float]]) -> tuple[float, int]:
        return statistics.median(n / t for n, t in samples), samples[0][0]

    d, nd = rate(direct(a.reps, a.max_tokens))
    q, nq = rate(through_llmflow(a.reps, a.max_tokens, render=False))
    r, nr = rate(through_llmflow(a.reps, a.max_tokens, render=True))
    print(
        f"llama-cpp-python directly : {d:6.1f} tokens/s  ({nd} tokens per answer, prompt evaluation included)"
    )
    print(
        f"through llmflow           : {q:6.1f} tokens/s  ({q / d:.0%} of direct; {nq} tokens; a whole run, events in SQLite)"
    )
    print(
        f"through llmflow + console : {r:6.1f} tokens/s  ({r / d:.0%} of direct; {nr} tokens; every chunk rendered)"
    )


if __name__ == "__main__":
    main()
