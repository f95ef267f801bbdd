"""SuperOptiX playbooks (``apiVersion: agent/v1``, ``kind: AgentSpec``) as flows. Pure: a
document in, a flow document out.

::

    apiVersion: agent/v1
    kind: AgentSpec
    metadata: {name: Sentiment Analyzer, id: sentiment_analyzer, version: 1.0.0}
    spec:
      language_model: {provider: ollama, model: llama3.1:8b, temperature: 0.2}
      persona: {role: ..., goal: ..., backstory: ...}           # genie tier (optional)
      input_fields:  [{name: text, type: str}]
      output_fields: [{name: sentiment, type: str}, {name: confidence, type: float}]
      tasks: [{name: analyze_sentiment, instruction: ..., inputs: [...], outputs: [...]}]
      agentflow: [{name: classify_sentiment, type: Generate, task: analyze_sentiment}]
      tools: {specific_tools: [calculator]}                      # or a list of names
      feature_specifications:
        scenarios:
          - {name: positive, description: ..., input: {text: ...}, expected_output: {sentiment: positive}}

becomes a flow named after ``metadata.id``: the agent spec becomes agent ``<id>`` (model
``provider:model``, persona and instruction as its system prompt, temperature and
max_tokens as params, tools by name); ``input_fields`` become inputs; each ``agentflow``
stage (else each task) becomes an ``llm`` step run by that agent, in order, each seeing the
previous stage's output; ``output_fields`` become the flow's outputs (several fields, or
one that is not text: the last step answers JSON with those fields, a structured output).
The BDD scenarios become the flow's inline ``data:`` (one record per scenario: its
``input`` fields, ``record_id`` = its name, ``expected_output``, ``description``), so
``llmflow eval PLAYBOOK`` (and ``llmflow batch``) run them.
"""

from __future__ import annotations

import re
from typing import Any

TYPES = {
    "str": "string",
    "string": "string",
    "text": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
}
_IDENT = re.compile(r"[^A-Za-z0-9_]")


def is_playbook(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "AgentSpec"
        and "apiVersion" in doc
        and "steps" not in doc
    )


def ident(text: str, default: str = "step") -> str:
    s = _IDENT.sub("_", str(text).strip()).strip("_")
    if not s:
        return default
    return s if not s[0].isdigit() else f"_{s}"


def _fields(raw: Any) -> list[dict[str, Any]]:
    out = []
    for f in raw or []:
        if isinstance(f, str):
            out.append({"name": f})
        elif isinstance(f, dict) and f.get("name"):
            out.append(f)
    return out


def _model(lm: dict[str, Any]) -> str | None:
    model = lm.get("model")
    if not model:
        return None
    provider = str(lm.get("provider") or "").strip().lower()
    model = str(model)
    if not provider or model.startswith(f"{provider}:"):
        return model
    return f"{provider}:{model}"


def _system(spec: dict[str, Any], name: str) -> str:
    persona = spec.get("persona") or {}
    parts = []
    if isinstance(persona, dict):
        if persona.get("role"):
            parts.append(f"You are {persona['role']}.")
        if persona.get("goal"):
            parts.append(f"Goal: {persona['goal']}")
        if persona.get("backstory"):
            parts.append(str(persona["backstory"]).strip())
        traits = persona.get("traits")
        if isinstance(traits, list) and traits:
            parts.append("Traits: " + ", ".join(str(t) for t in traits))
    elif isinstance(persona, str):
        parts.append(persona.strip())
    if not parts:
        parts.append(f"You are the {name.replace('_', ' ')} agent.")
    return "\n".join(parts)


def _tools(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(t.get("name") if isinstance(t, dict) else t) for t in raw if t]
    if isinstance(raw, dict) and raw.get("enabled", True) is not False:
        return [
            str(t.get("name") if isinstance(t, dict) else t) for t in raw.get("specific_tools") or [] if t
        ]
    return []


def _scenarios(spec: dict[str, Any], input_names: list[str]) -> list[dict[str, Any]]:
    fs = spec.get("feature_specifications") or {}
    out = []
    for i, sc in enumerate((fs.get("scenarios") if isinstance(fs, dict) else None) or []):
        if not isinstance(sc, dict):
            continue
        given = sc.get("input")
        if not isinstance(given, dict):
            given = {input_names[0]: given} if input_names and given is not None else {}
        record = {"record_id": str(sc.get("name") or f"scenario_{i + 1}"), **given}
        record["expected_output"] = sc.get("expected_output")
        if sc.get("description"):
            record["description"] = sc["description"]
        out.append(record)
    return out


def playbook_to_flow(doc: dict[str, Any], default_name: str = "agent") -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    name = ident(meta.get("id") or meta.get("name") or default_name, default_name)
    lm = spec.get("language_model") or {}
    params = {k: lm[k] for k in ("temperature", "max_tokens") if lm.get(k) is not None}
    tasks = {str(t.get("name")): t for t in spec.get("tasks") or [] if isinstance(t, dict) and t.get("name")}
    agent: dict[str, Any] = {
        "description": str(meta.get("description") or meta.get("name") or name),
        "system": _system(spec, name),
        "params": params,
        "role": "agent",
    }
    if _model(lm):
        agent["model"] = _model(lm)
    tools = _tools(spec.get("tools"))
    if tools:
        agent["tools"] = tools
    inputs_f = _fields(spec.get("input_fields"))
    outputs_f = _fields(spec.get("output_fields"))
    inputs = {
        ident(f["name"], "input"): {
            "type": TYPES.get(str(f.get("type", "str")).lower(), "string"),
            **({"description": f["description"]} if f.get("description") else {}),
        }
        for f in inputs_f
    }
    if not inputs:
        inputs = {"query": {"type": "string", "description": "The request"}}
    stages = [s for s in spec.get("agentflow") or [] if isinstance(s, dict)]
    if not stages:
        stages = [{"name": n, "task": n} for n in tasks] or [{"name": "respond", "task": None}]
    structured = len(outputs_f) > 1 or (
        len(outputs_f) == 1 and TYPES.get(str(outputs_f[0].get("type", "str")).lower(), "string") != "string"
    )
    steps: list[dict[str, Any]] = []
    prev: str | None = None
    for i, stage in enumerate(stages):
        sid = ident(stage.get("name") or f"stage_{i + 1}")
        task = tasks.get(str(stage.get("task"))) or {}
        text = str(task.get("instruction") or task.get("description") or "Respond to the input.").strip()
        wanted = [
            ident(x if isinstance(x, str) else x.get("name", ""), "") for x in task.get("inputs") or []
        ] or list(inputs)
        lines = [text, ""] + [f"{k}: {{{{ inputs.{k} }}}}" for k in wanted if k in inputs]
        if prev:
            lines += ["", f"Result of {prev}:", f"{{{{ steps.{prev}.output }}}}"]
        step: dict[str, Any] = {"id": sid, "kind": "llm", "agent": name, "prompt": "\n".join(lines).strip()}
        if stage.get("type"):
            step["description"] = f"{stage['type']} ({stage.get('task') or sid})"
        steps.append(step)
        prev = sid
    last = steps[-1]
    outputs: dict[str, str] = {}
    if structured:
        props = {
            ident(f["name"], "field"): {"type": TYPES.get(str(f.get("type", "str")).lower(), "string")}
            for f in outputs_f
        }
        last["output"] = {"type": "object", "properties": props, "required": list(props)}
        last["prompt"] += "\n\nAnswer with a JSON object with the fields: " + ", ".join(
            f"{k} ({v['type']})" for k, v in props.items()
        )
        outputs = {k: f"{{{{ steps.{last['id']}.output.{k} }}}}" for k in props}
    elif outputs_f:
        outputs = {ident(outputs_f[0]["name"], "result"): f"{{{{ steps.{last['id']}.output }}}}"}
    flow: dict[str, Any] = {
        "name": name,
        "description": str(meta.get("description") or meta.get("name") or "SuperOptiX agent"),
        "version": str(meta.get("version") or "1"),
        "inputs": inputs,
        "agents": {name: agent},
        "steps": steps,
    }
    if outputs:
        flow["outputs"] = outputs
    scenarios = _scenarios(spec, list(inputs))
    if scenarios:
        flow["data"] = scenarios
    return flow
