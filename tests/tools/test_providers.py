"""Native tool calling through each provider's own wire format, against loopback servers:
OpenAI-compatible (pydantic-ai), Anthropic (pydantic-ai), Ollama's /api/chat; and the
message conversion for Gemini (pydantic-ai), whose endpoint is not configurable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.providers.conftest import ThreadedServer, final, run

from llmflow.providers.base import ChatMessage, ModelRequest, ToolCall, ToolDef
from llmflow.providers.registry import ProviderRegistry

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("pydantic_ai")

WEATHER = ToolDef(
    "weather",
    "Weather of a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
FIRST = [ChatMessage("user", "Weather in Oslo?")]
SECOND = [
    *FIRST,
    ChatMessage("assistant", "", tool_calls=(ToolCall("call_9", "weather", {"city": "Oslo"}),)),
    ChatMessage("tool", '{"temp": 21}', tool_call_id="call_9", name="weather"),
]


def sse(events: list[dict[str, Any]], named: bool = False) -> Any:
    for e in events:
        yield (f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n"
    if not named:
        yield "data: [DONE]\n\n"


class Servers:
    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {"openai": [], "anthropic": [], "ollama": []}

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import StreamingResponse

        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def openai(req: fastapi.Request) -> Any:
            body = await req.json()
            self.bodies["openai"].append(body)
            base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
            if body["messages"][-1]["role"] == "tool":
                chunks = [
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": "It is 21 degrees."},
                                "finish_reason": None,
                            }
                        ],
                    },
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                ]
            else:
                call = {
                    "index": 0,
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
                chunks = [
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "tool_calls": [call]},
                                "finish_reason": None,
                            }
                        ],
                    },
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                ]
            chunks.append(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
            )
            return StreamingResponse(sse(chunks), media_type="text/event-stream")

        @app.post("/v1/messages")
        async def anthropic(req: fastapi.Request) -> Any:
            body = await req.json()
            self.bodies["anthropic"].append(body)
            start = {
                "type": "message_start",
                "message": {
                    "id": "m1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                },
            }
            if body["messages"][-1]["content"][0].get("type") == "tool_result":
                blocks = [
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "It is 21 degrees."},
                    },
                ]
                stop = "end_turn"
            else:
                blocks = [
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "weather",
                            "input": {},
                        },
                    },
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'},
                    },
                ]
                stop = "tool_use"
            events = [
                start,
                *blocks,
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 4},
                },
                {"type": "message_stop"},
            ]
            return StreamingResponse(sse(events, named=True), media_type="text/event-stream")

        @app.get("/api/tags")
        async def tags() -> Any:
            return {"models": [{"name": "llama3.1:latest"}]}

        @app.post("/api/chat")
        async def ollama(req: fastapi.Request) -> Any:
            body = await req.json()
            self.bodies["ollama"].append(body)
            if body["messages"][-1]["role"] == "tool":
                lines = [{"message": {"role": "assistant", "content": "It is 21 degrees."}, "done": False}]
            else:
                lines = [
                    {
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}],
                        },
                        "done": False,
                    }
                ]
            lines.append(
                {
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 5,
                    "eval_count": 3,
                }
            )
            return StreamingResponse(
                ("".join(json.dumps(x) + "\n" for x in lines),), media_type="application/x-ndjson"
            )

        return app


@pytest.fixture(scope="module")
def servers():
    state = Servers()
    with ThreadedServer(state.app()) as server:
        yield state, server.url


def two_turns(registry: ProviderRegistry, model: str) -> tuple[Any, Any]:
    provider, name = registry.resolve(model)
    first = final(run(provider, ModelRequest(name, FIRST, tools=(WEATHER,))))
    second = final(run(provider, ModelRequest(name, SECOND, tools=(WEATHER,))))
    return first, second


def test_openai_compatible_tool_calls(servers):
    state, url = servers
    first, second = two_turns(
        ProviderRegistry({"LLMFLOW_PROVIDER_LOOPBACK_BASE_URL": url + "/v1"}), "loopback:tiny"
    )
    assert first.tool_calls == (ToolCall("call_9", "weather", {"city": "Oslo"}),)
    assert second.text == "It is 21 degrees." and second.tool_calls == ()
    sent = state.bodies["openai"]
    assert sent[0]["tools"][0]["function"]["name"] == "weather" and sent[0]["tools"][0]["function"][
        "parameters"
    ]["required"] == ["city"]
    assert sent[1]["messages"][1]["tool_calls"][0]["id"] == "call_9"
    assert sent[1]["messages"][2] == {"role": "tool", "tool_call_id": "call_9", "content": '{"temp": 21}'}


def test_anthropic_tool_use(servers):
    state, url = servers
    first, second = two_turns(
        ProviderRegistry({"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": url}), "anthropic:claude-test"
    )
    assert first.tool_calls == (ToolCall("toolu_1", "weather", {"city": "Oslo"}),)
    assert second.text == "It is 21 degrees."
    sent = state.bodies["anthropic"]
    assert sent[0]["tools"][0]["name"] == "weather" and sent[0]["tools"][0]["input_schema"]["required"] == [
        "city"
    ]
    assert sent[1]["messages"][1]["content"][-1] == {
        "type": "tool_use",
        "id": "call_9",
        "name": "weather",
        "input": {"city": "Oslo"},
    }
    assert (
        sent[1]["messages"][2]["content"][0]["type"] == "tool_result"
        and sent[1]["messages"][2]["content"][0]["tool_use_id"] == "call_9"
    )


def test_ollama_native_tools(servers):
    state, url = servers
    first, second = two_turns(ProviderRegistry({"OLLAMA_BASE_URL": url}), "ollama:llama3.1")
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("weather", {"city": "Oslo"})]
    assert second.text == "It is 21 degrees."
    sent = state.bodies["ollama"]
    assert sent[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather of a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert sent[1]["messages"][1]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
    ]
    assert sent[1]["messages"][2] == {"role": "tool", "content": '{"temp": 21}', "tool_name": "weather"}


def test_gemini_gets_the_same_conversation_as_pydantic_ai_parts():
    from pydantic_ai.messages import ModelRequest as Turn
    from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart

    from llmflow.providers.pydantic_ai_provider import to_model_messages

    msgs = to_model_messages(SECOND)
    assert [type(m) for m in msgs] == [Turn, ModelResponse, Turn]
    call = msgs[1].parts[0]
    assert isinstance(call, ToolCallPart) and (call.tool_name, call.args, call.tool_call_id) == (
        "weather",
        {"city": "Oslo"},
        "call_9",
    )
    ret = msgs[2].parts[0]
    assert isinstance(ret, ToolReturnPart) and (ret.tool_name, ret.tool_call_id, ret.content) == (
        "weather",
        "call_9",
        '{"temp": 21}',
    )


def test_the_embedded_models_answers_are_a_call_or_an_answer():
    from llmflow.providers.local import parse_tool_answer, tool_choice_schema, tool_request

    req = ModelRequest(
        "gemma3-270m",
        [ChatMessage("user", "Weather in Oslo?")],
        params={"tool_choice": "required"},
        tools=(WEATHER,),
    )
    schema = tool_choice_schema(req)
    assert [o["properties"].get("tool", {}).get("const") for o in schema["anyOf"]] == [
        "weather"
    ]  # required: no answer yet
    rewritten = tool_request(req)
    assert rewritten.messages[0].role == "system" and "weather" in rewritten.messages[0].content
    assert "tool_choice" not in rewritten.params
    text, calls = parse_tool_answer('{"tool": "weather", "arguments": {"city": "Oslo"}}', rewritten)
    assert text == "" and calls == (ToolCall("call_0_0", "weather", {"city": "Oslo"}),)
    later = ModelRequest("gemma3-270m", list(SECOND), params={"tool_choice": "required"}, tools=(WEATHER,))
    assert len(tool_choice_schema(later)["anyOf"]) == 2  # after a result it may answer
    assert tool_request(later).messages[-1].content == 'Weather in Oslo?\nResult of weather: {"temp": 21}'
    assert parse_tool_answer('{"answer": "21 degrees"}', rewritten) == ("21 degrees", ())
    assert parse_tool_answer("not json", rewritten) == ("not json", ())
