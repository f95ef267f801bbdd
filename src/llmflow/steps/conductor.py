"""`conductor`: a host picks the next participant until it says END (Buttermilk's HOST).

``host: sequence`` walks the participants in order; otherwise the host agent is asked
which participant should speak next (answering with a name or END). With
``human_confirm`` a person confirms each turn (reject ends the chat)."""

from __future__ import annotations

import re
from typing import Any

from llmflow.engine.events import EventType as E
from llmflow.engine.ports import HumanQuestion, StepContext
from llmflow.model.expressions import render_async
from llmflow.model.spec import ConductorStep
from llmflow.steps.human import interpret
from llmflow.steps.llm import agent_answer, call_model


def pick(answer: str, participants: list[str]) -> str | None:
    """The participant named in the host's answer, or None for END / nothing recognisable."""
    text = answer.strip()
    if re.search(r"\bEND\b", text):
        return None
    low = text.lower()
    hits = [(low.find(p.lower()), p) for p in participants if p.lower() in low]
    return min(hits)[1] if hits else None


async def execute(ctx: StepContext) -> Any:
    spec = ctx.step
    assert isinstance(spec, ConductorStep)
    task = await render_async(spec.prompt, ctx.template)
    transcript: list[dict[str, Any]] = []
    for turn in range(1, spec.max_turns + 1):
        if spec.host == "sequence":
            nxt = spec.participants[turn - 1] if turn <= len(spec.participants) else None
        else:
            host = ctx.flow.agents.get(spec.host)
            listing = "\n".join(
                f"- {p}: {(ctx.flow.agents[p].description or ctx.flow.agents[p].role or p)}"
                for p in spec.participants
            )
            so_far = (
                "\n".join(f"[{t['participant']}] {t['output']}" for t in transcript)
                or "(nobody has spoken yet)"
            )
            msgs = [
                (
                    "user",
                    f"Task: {task}\n\nParticipants:\n{listing}\n\nConversation so far:\n{so_far}\n\nWho should speak next? Answer with one participant name, or END if the task is done.",
                )
            ]
            if host and host.system:
                msgs.insert(0, ("system", host.system))
            answer = await call_model(ctx, host, msgs, {}, None)
            nxt = pick(str(answer), spec.participants)
        if nxt is None:
            ctx.event(
                E.CONDUCTOR_TURN, f"Host ends the chat after {turn - 1} turn(s)", turn=turn, participant="END"
            )
            break
        if spec.human_confirm:
            ok = interpret(
                await ctx.ask_human(
                    HumanQuestion(prompt=f"Next: {nxt}. Proceed?", input="confirm", key=f"turn{turn}")
                ),
                "confirm",
                None,
            )
            if not ok:
                ctx.event(
                    E.CONDUCTOR_TURN,
                    f"Human stopped the chat before {nxt}",
                    turn=turn,
                    participant="END",
                    rejected=nxt,
                )
                break
        agent = ctx.flow.agents.get(nxt)
        so_far = "\n".join(f"[{t['participant']}] {t['output']}" for t in transcript)
        prompt = (
            f"{task}\n\n"
            + (f"Conversation so far:\n{so_far}\n\n" if so_far else "")
            + f"You are {nxt}. Give your contribution."
        )
        msgs = ([("system", agent.system)] if agent and agent.system else []) + [("user", prompt)]
        out = await agent_answer(ctx, agent, msgs, loop=f"turn{turn}")
        transcript.append({"turn": turn, "participant": nxt, "output": out})
        ctx.event(E.CONDUCTOR_TURN, f"Turn {turn}: {nxt}", turn=turn, participant=nxt, output=out)
    return {
        "transcript": transcript,
        "final": transcript[-1]["output"] if transcript else None,
        "turns": len(transcript),
    }
