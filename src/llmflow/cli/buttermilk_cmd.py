"""Buttermilk's command forms, mapped to llmflow's: the ``buttermilk`` entry point (``python
-m buttermilk.runner.cli ...`` users keep their commands) prints a one-line note naming the
native form on stderr, then runs it.

=============================================  ================================================
Buttermilk                                     llmflow
=============================================  ================================================
``run=api "+flows=[trans,tox]" [port=8000]``   ``llmflow serve --flows trans,tox [--port 8000]``
``run=console +flow=X +prompt="..."``          ``llmflow run X --prompt "..."``
``+record_id=ID``, ``run.human_in_loop=false`` ``--record-id ID``, ``--no-human``
``run=batch +flow=X +max_records=3``           ``llmflow batch X --max-records 3``
``-c job +flow=X`` / ``--cfg job``             ``llmflow config X``
``llms=full`` (a config group option)          ``+llms=full`` when ``conf/llms/full.yaml`` exists
any other ``key=value``                        passed on as a Hydra override of the flow
=============================================  ================================================
"""

from __future__ import annotations

import shlex
import sys

USAGE = "usage: buttermilk run=api|console|batch +flow=NAME [+prompt=...] [+record_id=ID] [+max_records=N] ['+flows=[a,b]'] [-c job] [key=value ...]"


class MappingError(ValueError):
    pass


def _list(value: str) -> list[str]:
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        v = v[1:-1]
    return [x.strip().strip("'\"") for x in v.split(",") if x.strip()]


def _group_override(arg: str, key: str, value: str) -> str:
    """``llms=full`` picks a config group option in Buttermilk (its config.yaml lists
    ``llms: lite`` among its defaults); a flow has no such default, so it is added:
    ``+llms=full``, when ``<config dir>/llms/full.yaml`` exists."""
    import os
    from pathlib import Path

    conf = Path(os.environ.get("LLMFLOW_CONFIG_DIR") or "conf")
    if not arg.startswith(("+", "~")) and "." not in key and (conf / key / f"{value}.yaml").is_file():
        return "+" + arg
    return arg


def to_llmflow(argv: list[str]) -> list[str]:
    """Buttermilk's arguments -> llmflow's. MappingError for what has no llmflow form."""
    mode = None
    flow: str | None = None
    flows: list[str] = []
    prompt = record_id = max_records = port = host = None
    human = True
    cfg_job = False
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "--cfg") and i + 1 < len(args):
            if args[i + 1] != "job":
                raise MappingError(
                    f"{a} {args[i + 1]}: only '{a} job' (print the resolved config) has an llmflow form (llmflow config FLOW)"
                )
            cfg_job = True
            i += 2
            continue
        key, sep, value = a.lstrip("+~").partition("=")
        if not sep:
            raise MappingError(f"{a!r} is not a key=value override; {USAGE}")
        if key == "run":
            mode = value
        elif key == "flow":
            flow = value
        elif key == "flows":
            flows = _list(value)
        elif key in ("prompt", "q"):
            prompt = value
        elif key == "record_id":
            record_id = value
        elif key == "max_records":
            max_records = value
        elif key == "port":
            port = value
        elif key == "host":
            host = value
        elif key == "run.human_in_loop":
            human = value.strip().lower() not in ("false", "0", "no")
        elif key in ("run.mode", "verbose", "reload", "log_level", "workers"):
            pass  # Buttermilk's runtime knobs: llmflow needs none of them
        else:
            rest.append(_group_override(a, key, value))
        i += 1
    if cfg_job:
        target = flow or (flows[0] if flows else None)
        if not target:
            raise MappingError("-c job needs +flow=NAME (the flow whose resolved config to print)")
        return ["config", target, *rest]
    if mode == "api":
        out = ["serve"]
        if flows or flow:
            out += ["--flows", ",".join(flows or [flow or ""])]
        if port:
            out += ["--port", port]
        if host:
            out += ["--host", host]
        return out
    if mode in ("console", None) and flow:
        out = ["run", flow, *rest]
        if prompt is not None:
            out += ["--prompt", prompt]
        if record_id is not None:
            out += ["--record-id", record_id]
        if not human:
            out.append("--no-human")
        return out
    if mode == "batch":
        if not flow:
            raise MappingError("run=batch needs +flow=NAME")
        out = ["batch", flow, *rest]
        if max_records is not None:
            out += ["--max-records", max_records]
        return out
    if mode in ("console", "batch", None):
        raise MappingError(f"run={mode or 'console'} needs +flow=NAME; {USAGE}")
    raise MappingError(f"run={mode} has no llmflow form (api, console and batch do); {USAGE}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__ if args else USAGE)
        return 0 if args else 2
    try:
        mapped = to_llmflow(args)
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"note: buttermilk {shlex.join(args)} is `llmflow {shlex.join(mapped)}` (the native form)",
        file=sys.stderr,
    )
    from llmflow.cli.main import main as llmflow_main

    llmflow_main(mapped)  # exits with llmflow's code
    return 0


if __name__ == "__main__":
    sys.exit(main())
