"""FlowRunner (``vibesse/langpad``) flow files as flows. Pure: a document in, a flow document
out, with a provenance note in its description.

A FlowRunner flow is steps of actions; a step's actions run in parallel, steps one after
another. Accepted shapes: a flow with its actions inline, or the app's normalised state
(``steps[].actionIds`` with the actions in a top-level ``actions`` map)::

    name: Summarise and title
    variables: {TOPIC: tea}                       # or [{name: TOPIC, value: tea}]
    steps:
      - name: Draft
        actions:
          - selectedModel: gpt-4o
            temperature: 0.7
            systemPromptEnabled: true
            systemPrompt: You write briefly.
            messages: [{role: user, content: "Write about {{$var.TOPIC}}"}]
      - name: Title
        actions:
          - messages: [{role: user, content: "Title for: {{$step1.action1.output}}"}]

Conversion: action M of step N is the ``llm`` step ``stepN_actionM`` (model ``openai:<the
selected model>``, ``temperature`` as a param, the system prompt when enabled, the
messages; ``structuredOutput`` JSON schema text as the step's ``output`` schema when
enabled). A step with several actions is a ``parallel`` group ``stepN`` (a failing action
fails the group and cancels its siblings). Each step needs the one before it.
``{{$var.NAME}}`` / ``{ $var.NAME }`` become ``{{ inputs.NAME }}`` (the variables are the
flow's inputs, their values the defaults); ``{{$stepN.actionM.output}}`` becomes
``{{ steps.stepN_actionM.output }}``; a reference to the same or a later step, or to an
action that does not exist, becomes an empty string, as in FlowRunner.

Differences, on purpose: a failed action fails the run (FlowRunner went on with the next
step and never marked the run failed); file attachments (``filesEnabled``) are refused with
a message, since the flow file does not hold the files.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmflow.errors import FlowValidationError
from llmflow.model.diagnostics import Diagnostic, Location

VAR = re.compile(r"\{\{\s*\$var\.([A-Za-z_][\w]*)\s*\}\}|\{\s*\$var\.([A-Za-z_][\w]*)\s*\}")
STEP_REF = re.compile(r"\{\{\s*\$step(\d+)\.action(\d+)\.output\s*\}\}")
ACTION_KEYS = ("messages", "selectedModel", "systemPrompt")


def is_flowrunner(doc: Any) -> bool:
    """A FlowRunner flow: steps holding ``actions`` / ``actionIds`` rather than step kinds."""
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not doc["steps"]:
        return False
    return all(isinstance(s, dict) and ("actions" in s or "actionIds" in s) for s in doc["steps"])


def _variables(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    out: dict[str, Any] = {}
    for v in raw or []:
        if isinstance(v, dict) and v.get("name"):
            out[str(v["name"])] = v.get("value", "")
    return out


def _error(message: str, path: str, hint: str, file: str) -> FlowValidationError:
    return FlowValidationError([Diagnostic("flowrunner", message, path, hint, Location(file))])


def flowrunner_to_flow(
    doc: dict[str, Any], default_name: str = "flow", file: str = "<flowrunner>"
) -> dict[str, Any]:
    """The llmflow flow document for a FlowRunner flow document."""
    actions_by_id = doc.get("actions") if isinstance(doc.get("actions"), dict) else {}
    if isinstance(actions_by_id, dict) and "byId" in actions_by_id:  # the Redux slice itself
        actions_by_id = actions_by_id["byId"]
    variables = _variables(doc.get("variables"))
    # the actions of every step, resolved, so references can be checked before converting
    steps_actions: list[list[dict[str, Any]]] = []
    for n, step in enumerate(doc["steps"], 1):
        acts = step.get("actions")
        if acts is None:
            acts = []
            for aid in step.get("actionIds") or []:
                a = actions_by_id.get(aid) if isinstance(actions_by_id, dict) else None
                if not isinstance(a, dict):
                    raise _error(
                        f"step {n} names action {aid!r}, which is not in 'actions'",
                        f"steps[{n - 1}].actionIds",
                        "add the action to the top-level 'actions' map",
                        file,
                    )
                acts.append(a)
        if not isinstance(acts, list) or not acts:
            raise _error(
                f"step {n} has no actions", f"steps[{n - 1}]", "give each step at least one action", file
            )
        steps_actions.append(acts)

    def convert(text: Any, n: int) -> str:
        s = str(text or "")

        def step_ref(m: re.Match[str]) -> str:
            sn, am = int(m.group(1)), int(m.group(2))
            if 1 <= sn < n and 1 <= am <= len(steps_actions[sn - 1]):
                return "{{ steps.step" + f"{sn}_action{am}" + ".output }}"
            return ""  # a forward or unknown reference is empty, as in FlowRunner

        s = STEP_REF.sub(step_ref, s)
        return VAR.sub(lambda m: "{{ inputs." + (m.group(1) or m.group(2)) + " }}", s)

    used_vars: set[str] = set()
    out_steps: list[dict[str, Any]] = []
    prev: str | None = None
    for n, acts in enumerate(steps_actions, 1):
        step = doc["steps"][n - 1]
        llm_steps = []
        for m, a in enumerate(acts, 1):
            where = f"steps[{n - 1}].actions[{m - 1}]"
            if a.get("filesEnabled") or any(
                isinstance(x, dict) and x.get("filesEnabled") and x.get("files")
                for x in a.get("messages") or []
            ):
                raise _error(
                    f"step {n} action {m} attaches files, which a flow file does not hold",
                    where,
                    "put the text in the message, or give it as a variable",
                    file,
                )
            messages = []
            for msg in a.get("messages") or []:
                if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
                    raise _error(
                        f"step {n} action {m}: a message needs role user|assistant and content",
                        where + ".messages",
                        "e.g. {role: user, content: ...}",
                        file,
                    )
                content = msg.get("content")
                if isinstance(content, list):  # the execution view's [{type: text, text}]
                    content = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
                used_vars |= {v1 or v2 for v1, v2 in VAR.findall(str(content or ""))}
                messages.append({"role": msg["role"], "content": convert(content, n)})
            if not messages:
                raise _error(
                    f"step {n} action {m} has no messages",
                    where,
                    "give the action at least one user message",
                    file,
                )
            llm: dict[str, Any] = {
                "model": "openai:" + str(a.get("selectedModel") or "gpt-4o"),
                "messages": messages,
            }
            if a.get("temperature") is not None:
                llm["params"] = {"temperature": a["temperature"]}
            if a.get("systemPromptEnabled", bool(a.get("systemPrompt"))) and a.get("systemPrompt"):
                used_vars |= {v1 or v2 for v1, v2 in VAR.findall(str(a["systemPrompt"]))}
                llm["system"] = convert(a["systemPrompt"], n)
            s: dict[str, Any] = {
                "id": f"step{n}_action{m}",
                "description": str(a.get("name") or f"{step.get('name') or f'Step {n}'}, action {m}"),
                "llm": llm,
            }
            if a.get("structuredOutputEnabled") and a.get("structuredOutput"):
                schema = a["structuredOutput"]
                try:
                    s["output"] = json.loads(schema) if isinstance(schema, str) else schema
                except ValueError:
                    raise _error(
                        f"step {n} action {m}: structuredOutput is not JSON",
                        where + ".structuredOutput",
                        "give a JSON schema",
                        file,
                    ) from None
            llm_steps.append(s)
        if len(llm_steps) == 1:
            group = llm_steps[0]
        else:
            group = {
                "id": f"step{n}",
                "kind": "parallel",
                "description": str(step.get("name") or f"Step {n}"),
                "steps": llm_steps,
            }
        if prev is not None:
            group["needs"] = [prev]
        prev = group["id"]
        out_steps.append(group)
    inputs = {k: {"type": "string", "default": "" if v is None else str(v)} for k, v in variables.items()}
    for k in sorted(used_vars - set(inputs)):
        inputs[k] = {"type": "string", "default": ""}  # FlowRunner renders an unset variable as ""
    last = steps_actions[-1]
    outputs = {
        f"action{m}": "{{ steps.step" + f"{len(steps_actions)}_action{m}" + ".output }}"
        for m in range(1, len(last) + 1)
    }
    name = str(doc.get("name") or doc.get("id") or default_name)
    note = f"Converted on load from the FlowRunner flow file {file}: {len(out_steps)} steps of actions -> llm steps (stepN_actionM), parallel groups for steps with several actions."
    return {
        "name": re.sub(r"[^\w.\- ]", "_", name),
        "description": note,
        "inputs": inputs,
        "steps": out_steps,
        "outputs": outputs,
    }
