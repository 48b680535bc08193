"""The loop from deployment back to training, against the real server: thumbs and "which was
better?" sent to /v1/feedback land in the run's comparisons, bad feedback is a 400 that stores
nothing, and `picochat dpo` then trains on what users said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from serve_model import CALC_Q, make_chat_run, serving  # noqa: E402

from picochat.cli import main  # noqa: E402
from picochat.prefs.store import Store  # noqa: E402
from picochat.rundir import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def chat_run(prepared_run, tmp_path_factory) -> Path:
    return make_chat_run(prepared_run, tmp_path_factory.mktemp("feedback") / "run")


@pytest.fixture(scope="module")
def server(chat_run):
    yield from serving(chat_run)


def ask(server, question: str, temperature: float, seed: int) -> str:
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "model": "picochat", "messages": [{"role": "user", "content": question}], "temperature": temperature,
        "seed": seed, "max_tokens": 24})
    return r.json()["choices"][0]["message"]["content"]


def test_feedback_is_stored_then_trained_on(server, chat_run):
    store = Store(RunDir(chat_run).prefs)
    for i in range(6):
        question = f"{CALC_Q} ({i})"
        good, bad = ask(server, question, 0.0, i), ask(server, question, 1.5, i) + " (wrong)"
        messages = [{"role": "user", "content": question}]
        r = httpx.post(server.url + "/v1/feedback", timeout=30, json={
            "messages": messages, "answers": [good, bad], "preferred": "a", "user": "tester"})
        assert r.status_code == 200, r.text
        assert r.json()["stored"] == "comparison"
        r = httpx.post(server.url + "/v1/feedback", timeout=30, json={
            "messages": messages, "answer": bad, "rating": "down"})
        assert r.status_code == 200 and r.json()["stored"] == "rating"
    found = store.comparisons()
    assert len(found) == 6 and {c.label.source for c in found} == {"feedback"}
    assert all(c.chosen[-1]["content"] == ask_text(c) for c in found)
    assert len(store.read().ratings) == 6
    assert main(["dpo", "--run", str(chat_run), "--preset", "micro", "--max-steps", "6",
                 "--set", "batch_size=2", "--set", "log_every=1"]) == 0
    entry = json.loads((chat_run / "run.json").read_text())["stages"]["dpo"]
    assert entry["status"] == "done" and entry["data"]["sources"] == {"feedback": entry["data"]["train_pairs"]}
    assert (chat_run / "dpo" / "config.json").exists()


def ask_text(comparison) -> str:
    """The preferred answer of a stored comparison: the one not marked wrong."""
    return next(side[-1]["content"] for side in (comparison.pair.a, comparison.pair.b)
                if not side[-1]["content"].endswith("(wrong)"))


@pytest.mark.parametrize("body, message", [
    ({"messages": [{"role": "user", "content": "hi"}], "answer": "x"}, "either answer and rating"),
    ({"messages": [{"role": "user", "content": "hi"}], "answers": ["same", "same"], "preferred": "a"}, "identical"),
    ({"messages": [{"role": "assistant", "content": "hi"}], "answer": "x", "rating": "up"}, "ends on a user"),
])
def test_bad_feedback_is_a_400_and_stores_nothing(server, chat_run, body, message):
    before = Store(RunDir(chat_run).prefs).path.read_bytes() if Store(RunDir(chat_run).prefs).path.exists() else b""
    r = httpx.post(server.url + "/v1/feedback", json=body, timeout=30)
    assert r.status_code == 400 and message in r.json()["error"]["message"]
    after = Store(RunDir(chat_run).prefs).path.read_bytes() if Store(RunDir(chat_run).prefs).path.exists() else b""
    assert after == before
