"""`llmflow optimize` (and SuperOptiX's `llmflow agent optimize NAME`): improve one LLM step's
instructions and few-shot demonstrations with DSPy; see llmflow.evals.optimize."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from llmflow.cli.errors import EXIT_INVALID, EXIT_OK, eprint
from llmflow.cli.runs_cmd import Json, _models, _runtime


def _run(flow: str, as_json: bool, verbose: bool, **kw: Any) -> int:
    from llmflow.errors import EvalError
    from llmflow.evals.optimize import optimize
    from llmflow.evals.summary import fmt_rate

    rt = _runtime(None, verbose)
    try:
        res = optimize(flow, runtime=rt, **kw)
    except EvalError as exc:
        eprint(f"error: {exc.message}")
        if exc.hint:
            eprint(f"hint: {exc.hint}")
        return EXIT_INVALID
    finally:
        rt.close()
    if as_json:
        print(json.dumps(res.to_dict(), indent=2, default=str))
        return EXIT_OK
    b, a = res.before, res.after
    print(
        f"optimized step {res.step} of flow {res.flow} with {res.optimizer}: {res.demos} demonstration(s){', new instructions' if res.instructions else ''}"
    )
    print(
        f"  {res.calls} optimizer call(s) recorded as runs ({res.optimization_id}.call-N), {res.tokens} tokens, ${res.cost:.4f}"
    )
    print(f"  held-out records: {res.dev} (trained on {res.train})")
    print(
        f"  before: pass rate {fmt_rate(b['pass_rate'])}, score {b['score']:.3f}  (evaluation {b['eval_id']})"
    )
    print(
        f"  after:  pass rate {fmt_rate(a['pass_rate'])}, score {a['score']:.3f}  (evaluation {a['eval_id']})"
    )
    print(f"wrote {res.output}")
    print(f"compare: llmflow evals compare {b['eval_id']} {a['eval_id']}")
    return EXIT_OK


def register(app: typer.Typer, agent: typer.Typer) -> None:
    @app.command("optimize")
    def optimize_cmd(
        flow: Annotated[str, typer.Argument(help="Flow file, directory or name")],
        step: Annotated[str, typer.Option("--step", "-s", help="The llm step to optimize")],
        data: Annotated[
            str | None,
            typer.Option(
                "--data",
                "-d",
                help="Training records (.jsonl .csv .json ...); default: the flow's inline data",
            ),
        ] = None,
        metric: Annotated[
            str, typer.Option("--metric", "-M", help="The metric to optimize for (as in llmflow eval)")
        ] = "exact",
        dev: Annotated[
            str | None,
            typer.Option(
                "--dev",
                help="Held-out records for the before/after scores (default: the last fifth of --data)",
            ),
        ] = None,
        expected: Annotated[
            str | None, typer.Option("--expected", help="Column with the expected output")
        ] = None,
        optimizer: Annotated[
            str,
            typer.Option(
                "--optimizer",
                help="bootstrap (BootstrapFewShot) or mipro (MIPROv2: also rewrites the instructions; more calls)",
            ),
        ] = "bootstrap",
        max_demos: Annotated[int, typer.Option("--max-demos", help="Few-shot demonstrations at most")] = 4,
        output: Annotated[
            str | None,
            typer.Option(
                "--output",
                "-o",
                help="Where to write the optimized flow (default: FLOW.optimized.yaml next to it)",
            ),
        ] = None,
        model: Annotated[
            list[str] | None,
            typer.Option("--model", help="provider:model for the step (and the optimizer's calls)"),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the optimizer's sampling")] = 0,
        as_json: Json = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> int:
        """Improve one LLM step's instructions and few-shot demonstrations with DSPy (needs
        the optimize extra); every optimizer call is a recorded run. Writes the optimized
        flow next to the old one and prints before/after scores on the held-out records."""
        return _run(
            flow,
            as_json,
            verbose,
            step=step,
            data=data,
            metric=metric,
            dev=dev,
            expected=expected,
            optimizer=optimizer,
            max_demos=max_demos,
            output=output,
            models=_models(model),
            seed=seed,
        )

    @agent.command("optimize")
    def agent_optimize(
        name: Annotated[
            str, typer.Argument(help="Agent name (finds <name>_playbook.yaml) or a playbook path")
        ],
        optimizer: Annotated[str, typer.Option("--optimizer", help="bootstrap or mipro")] = "bootstrap",
        model: Annotated[list[str] | None, typer.Option("--model")] = None,
        as_json: Json = False,
    ) -> int:
        """Optimize a playbook's last stage on its BDD scenarios (SuperOptiX's `super agent optimize`)."""
        from llmflow.errors import EvalError
        from llmflow.evals.playbook import find_agent_playbook

        path = find_agent_playbook(name)
        if path is None:
            eprint(f"error: no playbook for agent {name!r}")
            return EXIT_INVALID
        try:
            from llmflow.model.loader import load_flow

            f = load_flow(path).flow
        except EvalError as exc:
            eprint(f"error: {exc.message}")
            return EXIT_INVALID
        return _run(
            str(path),
            as_json,
            False,
            step=f.steps[-1].id,
            metric="bdd",
            expected="expected_output",
            optimizer=optimizer,
            models=_models(model),
        )
