"""Which prompt frame gets the best answers out of the embedded model (Gemma 3 270M, a small
*base* model, where the frame decides much of the quality)?

Run: python bench/frames.py [--questions bench/data/general_questions.jsonl] [--max-tokens 48] [--only 0 2] [--markdown]

Every frame answers the same shipped general questions on the same loaded model file; an
answer scores the share of the question's keyword groups it contains (any word of a group
counts, case-insensitive), so "Why is the sky blue?" wants scattering, light and blue. Prints
one row per frame: mean score, questions fully answered, mean answer length, seconds per
answer (the machine may be shared: compare rows of one invocation, not across runs), then
each frame's answer to the first question. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.providers.base import ChatMessage
from llmflow.providers.local import build_prompt, gemma_model_path

HERE = Path(__file__).resolve().parent

FEW_SHOT = [
    ("What colour is the sky on a clear day?", "Blue."),
    (
        "Why does metal feel colder than wood?",
        "Metal conducts heat away from your hand faster than wood, so it feels colder even at the same temperature.",
    ),
    ("What is the capital of Japan?", "Tokyo."),
    (
        "Why do we see lightning before we hear thunder?",
        "Light travels much faster than sound, so the flash reaches us before the sound of the thunder.",
    ),
]


@dataclass
class Frame:
    name: str
    prompt: Callable[[str], str]
    options: dict[str, Any] = field(default_factory=dict)


def qa(examples: list[tuple[str, str]], preamble: str) -> Callable[[str], str]:
    def build(q: str) -> str:
        lines = [preamble, ""] if preamble else []
        for eq, ea in examples:
            lines += [f"Question: {eq}", f"Answer: {ea}", ""]
        lines += [f"Question: {q}", "Answer:"]
        return "\n".join(lines)

    return build


def chat(q: str) -> str:
    return f"<start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n"


QA_STOP = ["\nQuestion:", "\n\n"]
FRAMES = [
    Frame(
        "llmflow's frame (whatever local.py builds now)",
        lambda q: build_prompt([ChatMessage("user", q)]),
        {"stop": QA_STOP, "temperature": 0.3},
    ),
    Frame(
        "preamble + 4 examples (short and explained), temp 0.3",
        qa(FEW_SHOT, "The following are questions with short, accurate answers."),
        {"stop": QA_STOP, "temperature": 0.3},
    ),
    Frame(
        "preamble + 4 examples, greedy (temp 0)",
        qa(FEW_SHOT, "The following are questions with short, accurate answers."),
        {"stop": QA_STOP, "temperature": 0.0},
    ),
    Frame(
        "explaining preamble + 4 examples, greedy",
        qa(
            FEW_SHOT,
            "A science teacher answers questions correctly, in one or two clear sentences that give the reason.",
        ),
        {"stop": QA_STOP, "temperature": 0.0},
    ),
    Frame("Gemma chat template, greedy", chat, {"stop": ["<end_of_turn>", "\n\n"], "temperature": 0.0}),
]


def score(answer: str, groups: list[list[str]]) -> float:
    text = answer.lower()
    return sum(any(w.lower() in text for w in g) for g in groups) / len(groups)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", default=str(HERE / "data" / "general_questions.jsonl"))
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--only", type=int, nargs="*", help="run only these frames (indexes into FRAMES)")
    ap.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for docs/models.md)"
    )
    args = ap.parse_args()
    import llama_cpp

    items = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()]
    llm = llama_cpp.Llama(
        model_path=str(gemma_model_path()), n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False, seed=7
    )
    rows = []
    samples: dict[str, str] = {}
    for frame in [f for i, f in enumerate(FRAMES) if args.only is None or i in args.only]:
        scores, words, secs = [], [], []
        for i, item in enumerate(items):
            opts = {"max_tokens": args.max_tokens, "repeat_penalty": 1.1, "seed": 7, **frame.options}
            t0 = time.perf_counter()
            out = llm.create_completion(frame.prompt(item["q"]), **opts)
            secs.append(time.perf_counter() - t0)
            answer = out["choices"][0]["text"].strip()
            scores.append(score(answer, item["keywords"]))
            words.append(len(answer.split()))
            if i == 0:
                samples[frame.name] = answer
        full = sum(1 for s in scores if s == 1.0)
        rows.append(
            (frame.name, sum(scores) / len(scores), full, sum(words) / len(words), sum(secs) / len(secs))
        )
        print(f"# {frame.name}: score {rows[-1][1]:.2f}, {full} of {len(items)} fully answered", flush=True)
    n = len(items)
    if args.markdown:
        print("| frame | score | fully answered | words per answer | s per answer |")
        print("|---|---|---|---|---|")
        for name, s, full, w, t in rows:
            print(f"| {name} | {s:.2f} | {full} of {n} | {w:.0f} | {t:.2f} |")
    else:
        print(f"{'frame':<58} {'score':>6} {'full':>7} {'words':>6} {'s/ans':>6}")
        for name, s, full, w, t in rows:
            print(f"{name:<58} {s:>6.2f} {full:>3}/{n:<3} {w:>6.0f} {t:>6.2f}")
    print(f"\n{items[0]['q']}")
    for name, answer in samples.items():
        print(f"  {name}: {answer!r}")


if __name__ == "__main__":
    main()
