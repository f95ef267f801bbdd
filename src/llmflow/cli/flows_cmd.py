"""`llmflow validate`, `llmflow config`, `llmflow flows list|show`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from llmflow.cli.common import ConfigDir  # noqa: E402  (re-exported: plugins import it from here)


def config_dir_default(value: str | None) -> str:
    return value or os.environ.get("LLMFLOW_CONFIG_DIR") or "conf"


def register(app: typer.Typer) -> None:
    if any(c.name == "validate" for c in app.registered_commands):
        return  # main() may run many times in one process (tests, notebooks)
    flows = typer.Typer(help="List and show flows.", no_args_is_help=True)
    app.add_typer(flows, name="flows")

    @app.command("validate")
    def validate(
        paths: Annotated[list[str], typer.Argument(metavar="PATHS", help="Flow files, directories or names")],
        overrides: Annotated[
            list[str] | None,
            typer.Option("--override", "-o", metavar="KEY=VALUE", help="Hydra override, repeatable"),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print diagnostics as JSON")] = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Validate flows without running them. Exit 0 when all are valid, 2 otherwise."""
        from llmflow.cli.errors import eprint
        from llmflow.settings import Settings
        from llmflow.tools.check import validate_flow_and_tools

        targets = [t for p in paths for t in _expand(p)]
        settings = Settings.from_env()
        settings.config_dir = settings.config_dir or (Path(config_dir) if config_dir else None)
        results = {
            p: validate_flow_and_tools(p, overrides or [], config_dir_default(config_dir), settings)
            for p in targets
        }
        bad = sum(1 for d in results.values() if d)
        if as_json:
            print(
                json.dumps(
                    {
                        p: {"valid": not d, "diagnostics": [x.to_dict() for x in d]}
                        for p, d in results.items()
                    },
                    indent=2,
                )
            )
        else:
            for p, diags in results.items():
                if not diags:
                    print(f"ok: {p}")
                for d in diags:
                    eprint(f"error: {d.format()}")
            if bad:
                n = sum(len(d) for d in results.values())
                eprint(
                    f"{n} problem{'s' if n != 1 else ''} in {bad} of {len(targets)} flow{'s' if len(targets) != 1 else ''}"
                )
        return 2 if bad else 0

    @app.command("config")
    def config(
        flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow file, directory or name")],
        overrides: Annotated[
            list[str] | None,
            typer.Argument(
                metavar="OVERRIDES", help="Hydra overrides: key=value, +key=value, ~key, group=option"
            ),
        ] = None,
        provenance: Annotated[
            bool, typer.Option("--provenance", help="Show where each value was set")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Print the fully resolved flow (like Hydra's --cfg job); --provenance says where each value came from."""
        from llmflow.model.loader import load_flow

        loaded = load_flow(flow, overrides or [], config_dir_default(config_dir))
        if as_json:
            print(json.dumps(loaded.record() if provenance else loaded.public_dict(), indent=2, default=str))
            return 0
        if not provenance:
            print(loaded.resolved_yaml(), end="")
            return 0
        print_provenance(loaded.provenance())
        return 0

    @flows.command("list")
    def flows_list(
        config_dir: ConfigDir = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> int:
        """List the flows of the project config directory."""
        from llmflow.model.loader import list_flows, load_flow

        names = list_flows(config_dir_default(config_dir))
        rows = []
        for n in names:
            try:
                f = load_flow(n, [], config_dir_default(config_dir)).flow
                rows.append({"name": n, "description": f.description, "steps": len(f.steps), "valid": True})
            except Exception as exc:  # noqa: BLE001 - a broken flow is listed as invalid
                diags = getattr(exc, "diagnostics", None)
                why = diags[0].format() if diags else str(exc)
                rows.append(
                    {
                        "name": n,
                        "description": why.splitlines()[0] if why else type(exc).__name__,
                        "steps": 0,
                        "valid": False,
                    }
                )
        if as_json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no flows in {config_dir_default(config_dir)}/flows")
        else:
            for r in rows:
                mark = "" if r["valid"] else "  [invalid]"
                print(f"{r['name']:<24} {r['description']}{mark}")
        return 0

    @flows.command("show")
    def flows_show(
        flow: Annotated[str, typer.Argument(metavar="FLOW", help="Flow file, directory or name")],
        overrides: Annotated[
            list[str] | None,
            typer.Argument(metavar="OVERRIDES", help="Hydra overrides, as for 'llmflow config'"),
        ] = None,
        graph: Annotated[bool, typer.Option("--graph", help="Print the step graph as Mermaid text")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        config_dir: ConfigDir = None,
    ) -> int:
        """Show a flow: description, inputs, agents and steps (or its graph)."""
        from llmflow.model.graph import flow_graph, to_mermaid
        from llmflow.model.loader import load_flow

        f = load_flow(flow, overrides or [], config_dir_default(config_dir)).flow
        if graph:
            print(to_mermaid(f), end="")
            return 0
        if as_json:
            print(json.dumps(f.to_dict(), indent=2))
            return 0
        print(f"{f.name} (version {f.version})")
        if f.description:
            print(f"  {f.description}")
        if f.inputs:
            print("inputs:")
            for k, spec in f.inputs.items():
                req = "required" if spec.is_required else f"default {spec.default!r}"
                print(f"  {k}: {spec.type} ({req}){' - ' + spec.description if spec.description else ''}")
        if f.agents:
            print("agents:")
            for k, a in f.agents.items():
                print(f"  {k}: {a.model or '(default model)'}")
        print("steps:")
        g = flow_graph(f)
        for nid in g.order:
            n = g.nodes[nid]
            needs = f" <- {', '.join(n.needs)}" if n.needs else ""
            print(f"  {nid} [{n.step.kind}]{needs}")
        return 0


def _expand(path: str) -> list[str]:
    """A project or config directory holding several flows stands for each of them."""
    from pathlib import Path

    d = Path(path)
    if not d.is_dir() or (d / "flow.yaml").exists():
        return [path]
    conf = d / "conf" if (d / "conf").is_dir() else d
    flows = sorted((conf / "flows").glob("*.yaml")) if (conf / "flows").is_dir() else []
    return [str(f) for f in flows] if len(flows) > 1 else [path]


def print_provenance(rows: list[dict]) -> None:
    """One line per value: key path, value, where it was set (and through which ${...})."""
    width = max((len(r["path"]) for r in rows), default=10)
    for r in rows:
        val = json.dumps(r["value"], ensure_ascii=False, default=str)
        if len(val) > 50:
            val = val[:47] + "..."
        src = r["source"]
        if r.get("origin") and r["origin"] not in src:
            src += f" ({r['origin']})"
        if r.get("interpolated_from"):
            src += f" via {r['interpolated_from']}"
            if r.get("interpolation_source"):
                src += f" = {r['interpolation_source']}"
        print(f"{r['path']:<{width}}  {val:<50}  {src}")
