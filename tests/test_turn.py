"""The answer protocol (picochat.engine.turn.Turn) with no model: token ids in, events out.

Each test spells an answer as the model would sample it, feeds it to a Turn one id at a time
(injecting what the Turn asks for, as a driver does), and checks the events, the messages, the
finish reason and the sampled/injected mask."""

from __future__ import annotations

import pytest
from token_ids import spell

from picochat.chat import tool_result_ids
from picochat.engine import MAX_TOOL_CALLS, SamplingParams, Token, Turn
from picochat.tools import Tool, ToolRegistry, default_tools


@pytest.fixture(scope="module")
def tok(run_tokenizer):
    return run_tokenizer


def run(tok, ids, params=None, prompt=None, **kw):
    """Feed `ids` as sampled tokens until the Turn finishes; returns (turn, events, injected)."""
    params = params or SamplingParams(temperature=0, max_tokens=500)
    prompt = prompt if prompt is not None else spell(tok, "<|bos|>", "<|user|>", "hi", "<|end|>", "<|assistant|>")
    turn = Turn(tok, params, prompt, kw.pop("context", 400), **kw)
    step = turn.start()
    events, injected = list(step.events), [step.inject] if step.inject else []
    for t in ids:
        if turn.done:
            break
        step = turn.feed(t)
        events += step.events
        if step.inject:
            injected.append(step.inject)
    return turn, events, injected


def kinds(events) -> list[str]:
    """Event kinds, a run of text events counted once (text streams a piece per token)."""
    out = [e.kind for e in events]
    return [k for i, k in enumerate(out) if i == 0 or k != "text" or out[i - 1] != "text"]


def text_of(events, kind="text") -> str:
    return "".join(e.text for e in events if e.kind == kind)


def the(events, kind):
    """The one event of a kind."""
    found = [e for e in events if e.kind == kind]
    assert len(found) == 1, kinds(events)
    return found[0]


def calc_call(tok, expression: str) -> list:
    return ["<|tool_call|>", '{"name": "calculator", "arguments": {"expression": "' + expression + '"}}',
            "<|/tool_call|>"]


def test_plain_text_ends_at_end_of_turn(tok):
    turn, events, _ = run(tok, spell(tok, "Hello there.", "<|end|>", "more"))
    assert text_of(events) == "Hello there."
    assert events[-1].kind == "done" and events[-1].finish_reason == "stop"
    assert events[-1].messages == [{"role": "assistant", "content": "Hello there."}]
    assert turn.mask == [1] * len(turn.ids) and turn.ids[-1] == tok.special_tokens["<|end|>"]


def test_any_turn_marker_ends_the_answer(tok):
    _, events, _ = run(tok, spell(tok, "Yes", "<|user|>", "and me"))
    assert text_of(events) == "Yes" and events[-1].finish_reason == "stop"


def test_thinking_is_reported_apart_from_the_answer(tok):
    _, events, _ = run(tok, spell(tok, "<|think|>", "two r's", "<|/think|>", "There are 2.", "<|end|>"))
    assert text_of(events, "thinking") == "two r's" and text_of(events) == "There are 2."
    assert events[-1].messages == [{"role": "assistant", "content": "There are 2.", "thinking": "two r's"}]


def test_a_tool_call_runs_and_its_result_is_injected(tok):
    ids = spell(tok, "Let me see.", *calc_call(tok, "12*34"), "It is 408.", "<|end|>")
    turn, events, injected = run(tok, ids, tools=default_tools())
    assert kinds(events) == ["text", "tool_call", "text", "done"]
    call = the(events, "tool_call").call
    assert (call.name, call.arguments, call.result) == ("calculator", {"expression": "12*34"}, "408")
    assert injected == [tool_result_ids(tok, "408")]
    assert events[-1].messages == [
        {"role": "assistant", "content": "Let me see.",
         "tool_calls": [{"type": "function", "function": {"name": "calculator", "arguments": {"expression": "12*34"}}}]},
        {"role": "tool", "content": "408"},
        {"role": "assistant", "content": "It is 408."}]
    # the mask: every sampled id 1, the injected result 0, in sequence order
    n = len(injected[0])
    at = turn.ids.index(tok.special_tokens["<|/tool_call|>"]) + 1
    assert turn.mask[at:at + n] == [0] * n and turn.ids[at:at + n] == injected[0]
    assert sum(turn.mask) == len(ids) and turn.answer == "Let me see.It is 408."


def test_the_tool_call_cap_is_one_rule(tok):
    ids = spell(tok, *[p for k in range(MAX_TOOL_CALLS + 2) for p in calc_call(tok, f"{k}+1")], "done", "<|end|>")
    params = SamplingParams(temperature=0, max_tokens=len(ids))
    turn, events, injected = run(tok, ids, params=params, tools=default_tools(), context=10 * len(ids))
    assert [e.kind for e in events].count("tool_call") == MAX_TOOL_CALLS and len(injected) == MAX_TOOL_CALLS
    assert events[-2].kind == "notice" and f"{MAX_TOOL_CALLS} tool calls" in events[-2].text
    assert events[-1].finish_reason == "length"
    assert turn.n_calls == MAX_TOOL_CALLS


def test_a_client_function_is_handed_back_unrun(tok):
    ran = []
    tools = ToolRegistry().register(Tool("get_weather", "", {}, lambda city: ran.append(city) or "sunny"))
    ids = spell(tok, "<|tool_call|>", '{"name": "get_weather", "arguments": {"city": "Paris"}}', "<|/tool_call|>",
                "ignored", "<|end|>")
    _, events, injected = run(tok, ids, tools=tools, client_tools=frozenset({"get_weather"}))
    assert kinds(events) == ["function_call", "done"] and not ran and not injected
    assert the(events, "function_call").call.arguments == {"city": "Paris"} and events[-1].finish_reason == "tool_calls"
    assert events[-1].messages[0]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_no_tools_and_bad_calls_get_error_results(tok):
    _, events, injected = run(tok, spell(tok, *calc_call(tok, "1+1"), "<|end|>"))
    assert the(events, "tool_call").call.result == "error: no tools are available" and injected
    _, events, _ = run(tok, spell(tok, "<|tool_call|>", "{not json", "<|/tool_call|>", "<|end|>"),
                       tools=default_tools())
    assert "not valid JSON" in the(events, "tool_call").call.result


def test_ending_the_turn_inside_a_call_does_not_run_it(tok):
    _, events, _ = run(tok, spell(tok, "<|tool_call|>", '{"name": "calculator"', "<|end|>"), tools=default_tools())
    assert kinds(events) == ["notice", "done"] and events[-1].finish_reason == "stop"


def test_stop_strings_cut_the_text_and_hold_back_partial_matches(tok):
    params = SamplingParams(temperature=0, max_tokens=500, stop=("STOP",))
    _, events, _ = run(tok, spell(tok, "one two ST", "OP three", "<|end|>"), params=params)
    assert text_of(events) == "one two " and events[-1].finish_reason == "stop"
    _, events, _ = run(tok, spell(tok, "one ST", "<|end|>"), params=params)
    assert text_of(events) == "one ST"          # a partial match is released at the end


def test_max_tokens_and_the_context_finish_with_length(tok):
    ids = spell(tok, "a b c d e f g h i j k l m n o p")
    turn, events, _ = run(tok, ids, params=SamplingParams(temperature=0, max_tokens=3))
    assert len(turn.tokens) == 3 and events[-1].finish_reason == "length"
    prompt = spell(tok, "<|bos|>", "<|assistant|>")
    turn, events, _ = run(tok, ids, prompt=prompt, context=len(prompt) + 4)
    assert turn.length == len(prompt) + 4 and events[-1].finish_reason == "length"
    assert any(e.kind == "notice" and "context is full" in e.text for e in events)


def test_a_tool_result_that_does_not_fit_stops_the_answer(tok):
    ids = spell(tok, *calc_call(tok, "2**200"), "<|end|>")
    _, events, injected = run(tok, ids, tools=default_tools(), context=len(ids) + 12)
    assert not injected and events[-1].finish_reason == "length"
    assert any("does not fit" in e.text for e in events if e.kind == "notice")


def test_a_prompt_ending_in_a_call_continues_or_runs_it(tok):
    base = spell(tok, "<|bos|>", "<|user|>", "sum", "<|end|>", "<|assistant|>")
    opened = base + spell(tok, "<|tool_call|>", '{"name": "calculator", ')      # a forced call, continued
    _, events, _ = run(tok, spell(tok, '"arguments": {"expression": "2+3"}}', "<|/tool_call|>", "<|end|>"),
                       prompt=opened, tools=default_tools())
    assert the(events, "tool_call").call.result == "5"
    closed = base + spell(tok, *calc_call(tok, "6*7"))                          # a closed call runs first
    turn, events, injected = run(tok, spell(tok, "42", "<|end|>"), prompt=closed, tools=default_tools())
    assert events[0].kind == "tool_call" and events[0].call.result == "42" and injected[0] == tool_result_ids(tok, "42")
    assert turn.mask[:len(injected[0])] == [0] * len(injected[0])


def test_logprobs_reach_every_text_token_even_when_held_back(tok):
    params = SamplingParams(temperature=0, max_tokens=50, logprobs=0, stop=("zz",))
    ids = tok.encode("ab z") + [tok.special_tokens["<|end|>"]]
    _, events, _ = run(tok, [Token(t, -0.5) for t in ids], params=params)
    texts = [e for e in events if e.kind == "text" and e.token is not None]
    assert len(texts) == len(ids) - 1 and all(e.token.logprob == -0.5 for e in texts)


def test_a_finished_turn_takes_no_more_tokens(tok):
    turn, _, _ = run(tok, spell(tok, "<|end|>"))
    with pytest.raises(ValueError):
        turn.feed(5)


def test_plain_completions_have_no_protocol(tok):
    ids = spell(tok, "x", "<|tool_call|>", "y", "<|think|>", "z", "<|end|>")
    _, events, injected = run(tok, ids, chat=False, tools=default_tools())
    assert text_of(events) == "xyz" and not injected and events[-1].finish_reason == "stop"


def test_a_grammar_holds_the_answer_and_then_only_its_end(tok):
    import torch

    from picochat.engine.grammar import Grammar, function_call, json_answer
    from picochat.rundir import PicochatError

    turn = Turn(tok, SamplingParams(temperature=0), spell(tok, "<|bos|>", "<|assistant|>"), 400,
                grammar=Grammar(tok, json_answer({"type": "object", "properties": {"n": {"type": "integer"}}})))
    flat = torch.zeros(1, tok.vocab_size)
    allowed = turn.constrain(flat)[0] > float("-inf")
    assert allowed[tok.encode("{")[0]] and not allowed[tok.encode("x")[0]] and not allowed[tok.end_id]
    for t in tok.encode('{"n": 12}'):
        assert turn.constrain(flat)[0, t] > float("-inf")
        turn.feed(t)
    allowed = turn.constrain(flat)[0] > float("-inf")
    assert allowed.sum() == 1 and allowed[tok.end_id]            # complete: only the end may follow
    assert turn.feed(tok.end_id).events[-1].finish_reason == "stop" and turn.answer == '{"n": 12}'
    with pytest.raises(PicochatError):
        Turn(tok, SamplingParams(), [1], 400, grammar=Grammar(tok, json_answer({"type": "object"}))).feed(
            tok.encode("x")[0])
    calls = Grammar(tok, function_call([{"name": "f", "parameters": {"type": "object"}}]))
    first = calls.constrain(flat)[0] > float("-inf")
    assert first.sum() == 1 and first[tok.special_tokens["<|tool_call|>"]]


def test_a_call_grammar_holds_each_call_and_frees_the_text(tok):
    import torch

    from picochat.engine.grammar import call_arguments

    lark = call_arguments([{"name": "calculator", "parameters": {"type": "object", "properties": {
        "expression": {"type": "string"}}, "required": ["expression"]}}])
    turn = Turn(tok, SamplingParams(temperature=0, max_tokens=500), spell(tok, "<|bos|>", "<|assistant|>"), 400,
                tools=default_tools(), call_grammar=lark)
    flat = torch.zeros(1, tok.vocab_size)
    assert not turn.constrained
    events = []
    for t in spell(tok, "Let me see.", *calc_call(tok, "6*7")):
        if turn.constrained:
            assert turn.constrain(flat)[0, t] > float("-inf")
        events += turn.feed(t).events
    assert not turn.constrained and the(events, "tool_call").call.result == "42"
    turn.feed(tok.special_tokens["<|tool_call|>"])
    assert turn.constrained and turn.constrain(flat)[0, tok.encode("x")[0]] == float("-inf")   # JSON only


def test_a_call_on_the_last_token_runs_but_injects_nothing(tok):
    ids = spell(tok, *calc_call(tok, "6*7"))
    turn, events, injected = run(tok, ids, params=SamplingParams(temperature=0, max_tokens=len(ids)),
                                 tools=default_tools())
    assert the(events, "tool_call").call.result == "42" and not injected
    assert events[-1].finish_reason == "length" and turn.mask == [1] * len(ids)
