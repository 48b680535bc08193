"""The comparisons store and the automatic sources: what is written is read back, torn or
corrupt lines cost a count and nothing else, and every rule pair agrees with the task checker
it encodes (the preferred answer passes it, the other fails)."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from picochat.chat import user
from picochat.prefs import sources
from picochat.prefs.store import Store, summary
from picochat.rundir import PicochatError
from picochat.tasks import TASKS

PROMPT = [user("Who are you?")]


def test_pairs_and_labels_round_trip(tmp_path):
    store = Store(tmp_path)
    pair = store.add_pair(PROMPT, "I'm picochat.", "I'm ChatGPT.", "test", split="train")
    store.add_label(pair, "a", labeler="ada")
    store.add_label(pair, "b", labeler="bob")
    found = store.comparisons("train")
    assert [c.chosen[-1]["content"] for c in found] == ["I'm picochat.", "I'm ChatGPT."]
    assert store.comparisons("heldout") == []
    agreement = summary(store.read())["test"]["agreement"]
    assert agreement == {"pairs_compared": 1, "agreed": 0, "rate": 0.0}


def test_undo_withdraws_one_label(tmp_path):
    store = Store(tmp_path)
    pair = store.add_pair(PROMPT, "I'm picochat.", "I'm Siri.", "test")
    first = store.add_label(pair, "a", labeler="ada")
    store.add_label(pair, "tie", labeler="ada")
    store.undo(first.id, "ada")
    assert [lab.label for lab in store.read().labels] == ["tie"]
    assert store.comparisons() == []                    # a tie names no winner
    with pytest.raises(PicochatError, match="no label"):
        store.undo(first.id, "ada")


def test_bad_input_is_refused_and_stores_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(PicochatError, match="identical"):
        store.add_pair(PROMPT, "same", "same", "test")
    with pytest.raises(PicochatError, match="no pair"):
        store.add_label("0123456789abcdef", "a", labeler="ada")
    pair = store.add_pair(PROMPT, "x", "y", "test")
    with pytest.raises(PicochatError, match="one of"):
        store.add_label(pair, "A+", labeler="ada")
    with pytest.raises(PicochatError, match="labeler"):
        store.add_label(pair, "a", labeler=" ")
    assert store.read().labels == []


def test_a_torn_line_is_skipped_and_the_next_append_survives(tmp_path):
    store = Store(tmp_path)
    pair = store.add_pair(PROMPT, "I'm picochat.", "I'm Alexa.", "test")
    store.add_label(pair, "a", labeler="ada")
    with open(store.path, "a") as f:                    # a writer killed mid-line
        f.write('{"kind": "label", "pair": "' + pair.id[:5])
    assert store.read().skipped_lines == 1
    store.add_label(pair, "a", labeler="bob")
    contents = store.read()
    assert contents.skipped_lines == 1 and [lab.labeler for lab in contents.labels] == ["ada", "bob"]


def test_an_absent_or_garbage_store_reads_empty(tmp_path):
    assert Store(tmp_path / "none").read().pairs == {}
    store = Store(tmp_path)
    store.path.write_text("not json\n[1, 2]\n{\"kind\": \"pair\"}\n")
    contents = store.read()
    assert contents.pairs == {} and contents.skipped_lines == 3


def test_ratings_pair_up_by_prompt(tmp_path):
    store = Store(tmp_path)
    store.add_rating(PROMPT, "I'm ChatGPT.", "down", labeler="ada")
    assert [r.answer[-1]["content"] for r in store.read().unanswered_downs()] == ["I'm ChatGPT."]
    store.add_rating(PROMPT, "I'm picochat.", "up", labeler="ada")
    [c] = store.comparisons()
    assert c.label.source == "feedback" and c.chosen[-1]["content"] == "I'm picochat."
    assert store.read().unanswered_downs() == []


@pytest.mark.parametrize("rule", sources.RULES)
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_rule_pairs_agree_with_the_task_checkers(tmp_path, rule, split):
    store = Store(tmp_path)
    sources.rule_pairs(store, split, per_rule=12, seed=3)
    found = [c for c in store.comparisons(split) if c.pair.meta["rule"] == rule]
    assert len(found) == 12
    assert {c.label.label for c in store.comparisons(split)} == {"a", "b"}     # the winner's side varies
    for c in found:
        chosen, rejected = answer_like(c.chosen), answer_like(c.rejected)
        if rule == "refusal":
            assert "can't" in chosen.text or "won't" in chosen.text
            continue
        task = TASKS[{"calculator": "arithmetic"}.get(rule, rule)]
        problem = SimpleNamespace(target=c.pair.meta.get("target") or target_of(rule, c), meta={"op": "*"})
        assert task.check(problem, chosen) and not task.check(problem, rejected)


def answer_like(messages):
    """A stored answer as the checkers read one (text and calls)."""
    return SimpleNamespace(text=messages[-1]["content"], calls=[])


def target_of(rule: str, comparison) -> str:
    if rule == "calculator":        # the tool result the preferred answer states
        return next(m["content"] for m in comparison.chosen if m["role"] == "tool")
    return {"identity": "picochat", "unknowable": "I don't know"}[rule]


def test_rule_pairs_hold_out_other_phrasings(tmp_path):
    store = Store(tmp_path)
    sources.rule_pairs(store, "train", per_rule=40, seed=0)
    sources.rule_pairs(store, "heldout", per_rule=20, seed=0)
    train = {json.dumps(c.pair.messages) for c in store.comparisons("train")}
    heldout = {json.dumps(c.pair.messages) for c in store.comparisons("heldout")}
    assert not train & heldout


def test_hhh_messages_split_dialogue_turns():
    text = "Human: Can you help me?\n\nAssistant: Sure, with what?\n\nHuman: My essay."
    assert sources.hhh_messages(text) == [user("Can you help me?"),
                                          {"role": "assistant", "content": "Sure, with what?"}, user("My essay.")]
    assert sources.hhh_messages("Plain question?") == [user("Plain question?")]


class Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge for the test: prefers the answer that names picochat, or (biased)
    always says A."""
    biased = False

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        a = text.split("Answer A:")[1].split("Answer B:")[0]
        verdict = "A" if self.biased or "picochat" in a else "B"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("biased", [False, True])
def test_a_judge_labels_only_verdicts_that_survive_swapping(tmp_path, biased):
    handler = type("J", (Judge,), {"biased": biased})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        store = Store(tmp_path)
        rng = random.Random(0)
        for bot in ("ChatGPT", "Siri", "Claude"):
            a, b = ("I'm picochat.", f"I'm {bot}.") if rng.random() < 0.5 else (f"I'm {bot}.", "I'm picochat.")
            store.add_pair(PROMPT, a, b, "page")
        made = sources.judge_pairs(store, f"http://127.0.0.1:{httpd.server_port}/v1", "test", progress=lambda s: None)
    finally:
        httpd.shutdown()
    if biased:
        assert made["labeled"] == 0 and made["inconsistent"] == 3
    else:
        assert made["labeled"] == 3
        assert all(c.chosen[-1]["content"] == "I'm picochat." for c in store.comparisons())


def test_an_unreachable_judge_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    store.add_pair(PROMPT, "x", "y", "page")
    with pytest.raises(PicochatError, match="did not answer"):
        sources.judge_pairs(store, "http://127.0.0.1:9/v1", "test", progress=lambda s: None)
