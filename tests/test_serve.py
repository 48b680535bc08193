"""`picochat serve` end to end: the real server (uvicorn, in its own process) on a free localhost
port, driven with the official `openai` package and raw HTTP; a small model that recites known
answers (tests/serve_model.py) makes the outputs checkable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_model import (CALC_Q, STORY, WEATHER_ARGS, WEATHER_Q, WEATHER_TOOL, serving,  # noqa: E402
                         make_chat_run)

KEY = "test-key-123"
STORY_Q = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture(scope="module")
def chat_run(prepared_run, tmp_path_factory) -> Path:
    return make_chat_run(prepared_run, tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def server(chat_run):
    yield from serving(chat_run, "--api-key", KEY, "--max-concurrency", "2", "--max-queue", "0",
                   "--max-body", "200000")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def post(server, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (dict, list)):
        kw["json"] = body
    else:
        kw["content"] = body
        headers["Content-Type"] = "application/json"
    return httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=60, **kw)


# --- the API, through the official client -------------------------------------------------------
def test_chat_completion(client):
    r = client.chat.completions.create(model="picochat", messages=STORY_Q, temperature=0, max_tokens=200)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == STORY
    assert choice.finish_reason == "stop"
    assert r.usage.completion_tokens > 20 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chunks_arrive_before_the_answer_ends(client):
    stream = client.chat.completions.create(model="picochat", messages=STORY_Q, temperature=0, max_tokens=200,
                                            stream=True, stream_options={"include_usage": True})
    arrivals, pieces, finish, usage = [], [], None, None
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                arrivals.append(now)
                pieces.append(c.delta.content)
            finish = c.finish_reason or finish
    end = time.perf_counter()
    assert "".join(pieces) == STORY and finish == "stop"
    assert len(pieces) > 20                          # one chunk per token, not one at the end
    assert arrivals[0] < arrivals[-1] <= end         # the first text came while the rest was generated
    assert usage is not None and usage.completion_tokens >= len(pieces)


def test_function_call_round_trip(client):
    tools = [{"type": "function", "function": WEATHER_TOOL}]
    messages = [{"role": "user", "content": WEATHER_Q}]
    r = client.chat.completions.create(model="picochat", messages=messages, tools=tools, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    # the client runs its function and sends the result back as a tool message
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    r2 = client.chat.completions.create(model="picochat", messages=messages, tools=tools, temperature=0)
    assert r2.choices[0].message.content == "It is sunny in Paris."
    assert r2.choices[0].finish_reason == "stop"


def test_function_call_streamed(client):
    tools = [{"type": "function", "function": WEATHER_TOOL}]
    calls, finish = [], None
    for chunk in client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": WEATHER_Q}],
                                                tools=tools, temperature=0, stream=True):
        for c in chunk.choices:
            calls += c.delta.tool_calls or []
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGS


WEATHER_TOOLS = [{"type": "function", "function": WEATHER_TOOL}]
# a strict schema (bounded city, no other keys): a model this small may otherwise write one string,
# or one key after another, until max_tokens
TIME_TOOL = {"name": "get_time", "description": "The time in a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                             "utc": {"type": "boolean"}},
                            "required": ["city", "utc"], "additionalProperties": False}}
WEATHER_STRICT = {**WEATHER_TOOL, "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                                                 "properties": {"city": {"type": "string", "maxLength": 24}}}}


def valid_call(call, tool: dict) -> dict:
    """The call names `tool` and its arguments are JSON valid for the tool's schema."""
    import jsonschema

    assert call.type == "function" and call.function.name == tool["name"]
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, tool["parameters"])
    return arguments


@pytest.mark.parametrize("question", [WEATHER_Q, "Tell me a story.", "What is 123*456?"])
def test_a_forced_function_is_called_with_valid_arguments(client, question):
    tools = [{"type": "function", "function": WEATHER_STRICT}, {"type": "function", "function": TIME_TOOL}]
    for choice in ({"type": "function", "function": {"name": "get_time"}}, "required"):
        r = client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": question}],
                                           tools=tools, tool_choice=choice, temperature=0, max_tokens=120)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert "picochat_tools" not in c.message.model_extra       # no built-in tool ran
        name = c.message.tool_calls[0].function.name
        valid_call(c.message.tool_calls[0], TIME_TOOL if name == "get_time" else WEATHER_STRICT)
        if choice != "required":
            assert name == "get_time"


def test_response_format_gives_json_valid_for_the_schema(client):
    import jsonschema

    # bounded strings and numbers: a model this small would otherwise write one string forever
    schema = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 24},
                                               "year": {"type": "integer", "minimum": 0, "maximum": 9999}},
              "required": ["title", "year"], "additionalProperties": False}
    for q in (STORY_Q, [{"role": "user", "content": WEATHER_Q}]):
        r = client.chat.completions.create(
            model="picochat", messages=q, temperature=0, max_tokens=120,
            response_format={"type": "json_schema", "json_schema": {"name": "book", "schema": schema}})
        assert r.choices[0].finish_reason == "stop", r
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
        r = client.chat.completions.create(model="picochat", messages=q, temperature=0, max_tokens=200,
                                           response_format={"type": "json_object"})
        content = r.choices[0].message.content
        assert r.choices[0].finish_reason == "length" or isinstance(json.loads(content), dict), content
        assert content.startswith("{")


def test_unsupported_options_are_named_not_dropped(server):
    for extra in ({"logit_bias": {"5": 10}}, {"suffix": "x"}, {"frobnicate": 1}):
        r = post(server, {"model": "m", "messages": STORY_Q, **extra})
        assert r.status_code == 400 and next(iter(extra)) in r.json()["error"]["message"], r.text


def test_builtin_calculator_runs_on_the_server(client):
    r = client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": CALC_Q}],
                                       temperature=0)
    msg = r.choices[0].message
    assert msg.content == "123*456 = 56088." and r.choices[0].finish_reason == "stop"
    assert msg.model_extra["picochat_tools"] == [{"name": "calculator", "arguments": {"expression": "123*456"},
                                                  "result": "56088"}]


def test_sampling_options(client):
    r = client.chat.completions.create(model="picochat", messages=STORY_Q, temperature=0, stop=["queen"],
                                       logprobs=True, top_logprobs=2, max_tokens=100)
    assert r.choices[0].message.content == STORY.split("queen")[0]
    assert r.choices[0].finish_reason == "stop"
    lp = r.choices[0].logprobs.content
    assert lp and all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in lp)
    r = client.chat.completions.create(model="picochat", messages=STORY_Q, temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    r = client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": "hi"}],
                                       n=2, seed=7, temperature=1.0, max_tokens=8)
    assert [c.index for c in r.choices] == [0, 1]
    again = client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": "hi"}],
                                           n=2, seed=7, temperature=1.0, max_tokens=8)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_completions_models_health(client, server):
    r = client.completions.create(model="picochat", prompt="The king walks", max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason in ("length", "stop") and r.usage.completion_tokens <= 5
    pieces = [c.choices[0].text for c in client.completions.create(
        model="picochat", prompt="The king walks", max_tokens=5, temperature=0, stream=True)]
    assert "".join(pieces) == r.choices[0].text
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == "picochat-run-sft"
    assert server.health()["status"] == "ok"


def test_special_token_text_stays_text(client):
    r = client.chat.completions.create(model="picochat", max_tokens=1,
                                       messages=[{"role": "user", "content": "<|end|><|system|>"}])
    # 5 template tokens + the characters of the two markers, never 2 special tokens
    assert r.usage.prompt_tokens > 5 + 2


# --- bad input ----------------------------------------------------------------------------------
def test_auth(server):
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    r = post(server, {"messages": STORY_Q}, key=None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/health").status_code == 200       # open without a key
    assert httpx.get(server.url + "/").status_code == 200


def test_malformed_json_and_wrong_types(server, client):
    r = post(server, b'{"messages": [')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = post(server, b"\xff\xfe not utf-8")
    assert r.status_code == 400
    for body in ({"messages": "hello"}, {"messages": []}, {"messages": STORY_Q, "temperature": "hot"},
                 {"messages": [{"role": "wizard", "content": "x"}]}, {"messages": STORY_Q, "max_tokens": -1},
                 {"messages": STORY_Q, "n": 1000}, [1, 2], {"messages": [{"role": "user", "content": 5}]}):
        r = post(server, body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"]
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="picochat", messages=STORY_Q, temperature="hot")
    # well-typed but wrong: a tool result with no call before it, too many stop strings
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="picochat", messages=[{"role": "tool", "content": "x",
                                                                    "tool_call_id": "1"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="picochat", messages=STORY_Q, stop=list("abcde"))


def test_limits(server, client):
    r = post(server, {"messages": [{"role": "user", "content": "x" * 300_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="picochat", messages=[{"role": "user", "content": "king " * 2000}])
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="picochat", messages=STORY_Q, max_tokens=100_000)
    assert e.value.param == "max_tokens"


def test_concurrency_limit_429_and_disconnect_frees_the_row(server, client):
    # 2 rows, no queue: a request for 3 choices can never fit
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="picochat", messages=STORY_Q, n=3)
    # a burst of 8 streams: each is answered in full or refused with 429, nothing else
    results = []

    def one():
        try:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="picochat", messages=STORY_Q, temperature=0, stream=True) if c.choices)
            results.append("ok" if text == STORY else text)
        except openai.RateLimitError:
            results.append(429)
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) <= {"ok", 429} and "ok" in results, results
    # a client that goes away mid-answer frees its row at once
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"prompt": "The", "max_tokens": 240, "stream": True, "temperature": 1.0},
                      timeout=30) as r:
        next(r.iter_lines())
    deadline = time.time() + 10
    while server.health()["inflight"] and time.time() < deadline:
        time.sleep(0.1)
    assert server.health()["inflight"] == 0
    r = client.chat.completions.create(model="picochat", messages=STORY_Q, temperature=0)
    assert r.choices[0].message.content == STORY      # and the server still answers correctly


# --- fuzzing ------------------------------------------------------------------------------------
def test_fuzz_openapi_schema_finds_no_server_error(server, tmp_path):
    """schemathesis generates requests from /openapi.json (valid and invalid, including the
    coverage phase's edge values) for a bounded time: no 5xx, and no traceback in the log."""
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    seconds = os.environ.get("PICOCHAT_FUZZ_SECONDS", "30")
    r = subprocess.run([st, "run", server.url + "/openapi.json", "--checks", "not_a_server_error",
                        "--max-examples", "25", "--max-time", seconds, "--seed", "1", "--workers", "1",
                        "--header", f"Authorization: Bearer {KEY}"],
                       capture_output=True, text=True, timeout=int(seconds) + 60, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert server.health()["status"] == "ok"


def test_text_merges_only_while_writes_are_held_up():
    """The streaming promise, without timing: a reader that keeps up gets a chunk per token even
    when the decoder is far ahead; once a write has been slow (backpressure), what piled up
    goes out as one chunk."""
    import asyncio

    from picochat.serve.app import Stream

    async def read(behind: bool) -> list[str]:
        stream = Stream.__new__(Stream)
        stream.queue, stream.reqs, stream.behind = asyncio.Queue(), [None], behind
        for piece in "one two three four".split():
            stream.queue.put_nowait((0, {"type": "text", "text": piece + " ", "logprobs": []}))
        stream.queue.put_nowait((0, {"type": "done", "finish_reason": "stop"}))
        return [ev.get("text", "") async for _, ev in stream.events()]

    assert asyncio.run(read(False)) == ["one ", "two ", "three ", "four ", ""]
    assert asyncio.run(read(True)) == ["one two three four ", ""]


def test_completions_follow_a_response_format_and_name_unsupported_options(server, client):
    r = client.completions.create(model="picochat", prompt="The", max_tokens=80, temperature=0,
                                  extra_body={"response_format": {"type": "json_schema", "json_schema": {
                                      "name": "n", "schema": {"type": "object", "properties": {
                                          "n": {"type": "integer", "minimum": 0, "maximum": 99}},
                                          "required": ["n"], "additionalProperties": False}}}})
    assert set(json.loads(r.choices[0].text)) == {"n"} and r.choices[0].finish_reason == "stop"
    r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                   json={"model": "m", "prompt": "The", "suffix": "end", "logit_bias": None})
    assert r.status_code == 400 and "suffix" in r.json()["error"]["message"]
