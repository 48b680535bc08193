"""The parts of the OpenAI API that tools other than chat clients rely on, against the real server:
every prompt form of /v1/completions, echoed prompt logprobs (what evaluation harnesses score
with), an lm-evaluation-harness run, and /v1/embeddings. The reciting test model
(tests/serve_model.py) is too small to know what sentences mean, so embeddings are checked for
shape, unit length, determinism and batching, not for similarity."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import torch
from serve_model import make_chat_run, serving

from picochat.model import load_pretrained
from picochat.tokenizer import Tokenizer

PROMPT = "The king walks under the river"
OTHER = "A friend speaks of gold"


@pytest.fixture(scope="module")
def chat_run(prepared_run, tmp_path_factory) -> Path:
    return make_chat_run(prepared_run, tmp_path_factory.mktemp("serve_api") / "run")


@pytest.fixture(scope="module")
def server(chat_run):
    yield from serving(chat_run, "--max-concurrency", "4")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tok(chat_run) -> Tokenizer:
    return Tokenizer.load(chat_run / "sft")


@pytest.fixture(scope="module")
def reference(chat_run):
    """The served weights as a plain Llama, to check the server's numbers against."""
    return load_pretrained(chat_run / "sft").eval()


def greedy(client, prompt, **kw):
    return client.completions.create(model="picochat", prompt=prompt, max_tokens=6, temperature=0, **kw)


# --- /v1/completions: every prompt form ---------------------------------------------------------
def test_every_prompt_form_gives_the_same_continuation(client, tok):
    text = greedy(client, PROMPT).choices[0].text
    other = greedy(client, OTHER).choices[0].text
    ids, other_ids = tok.encode(PROMPT, bos=True), tok.encode(OTHER, bos=True)
    assert greedy(client, ids).choices[0].text == text
    assert [c.text for c in greedy(client, [PROMPT, OTHER]).choices] == [text, other]
    batched = greedy(client, [ids, other_ids])        # what lm-evaluation-harness sends
    assert [c.index for c in batched.choices] == [0, 1]
    assert [c.text for c in batched.choices] == [text, other]


def test_batched_prompts_index_prompt_major_then_n(client, tok):
    r = greedy(client, [tok.encode(PROMPT, bos=True), tok.encode(OTHER, bos=True)], n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    texts = [c.text for c in r.choices]
    assert texts[0] == texts[1] == greedy(client, PROMPT).choices[0].text
    assert texts[2] == texts[3] == greedy(client, OTHER).choices[0].text
    # each prompt is counted once, however many choices it has
    assert r.usage.prompt_tokens == len(tok.encode(PROMPT, bos=True)) + len(tok.encode(OTHER, bos=True))


def test_bad_token_prompts_are_400(client, tok):
    with pytest.raises(openai.BadRequestError, match="token ids"):
        greedy(client, [tok.encode(PROMPT), [10**9]])
    with pytest.raises(openai.BadRequestError, match="empty"):
        greedy(client, [tok.encode(PROMPT), []])


# --- echo + logprobs: scoring a prompt --------------------------------------------------------
def expected_logprobs(model, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) for i >= 1, from the plain model."""
    with torch.no_grad():
        logp = model(torch.tensor([ids])).log_softmax(-1)[0]
    return [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_echo_with_no_new_tokens_scores_the_prompt(client, tok, reference):
    """What lm-evaluation-harness's loglikelihood requests need: the prompt's own logprobs."""
    ids = tok.encode(PROMPT)                      # token ids as the harness sends them: no BOS
    r = client.completions.create(model="picochat", prompt=[ids], echo=True, max_tokens=0, logprobs=1)
    choice = r.choices[0]
    assert choice.text == PROMPT
    lp = choice.logprobs
    assert "".join(lp.tokens) == PROMPT and len(lp.tokens) == len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None   # nothing came before it
    assert lp.token_logprobs[1:] == pytest.approx(expected_logprobs(reference, ids), abs=1e-4)
    for got, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert len(top) == 1 and max(top.values()) >= got - 1e-6
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 0


def test_echo_of_a_text_prompt_scores_it_after_bos(client, tok, reference):
    r = client.completions.create(model="picochat", prompt=PROMPT, echo=True, max_tokens=0, logprobs=0)
    lp = r.choices[0].logprobs
    ids = tok.encode(PROMPT, bos=True)
    assert r.choices[0].text == PROMPT and len(lp.tokens) == len(ids) - 1     # the server's BOS is not echoed
    assert lp.token_logprobs == pytest.approx(expected_logprobs(reference, ids), abs=1e-4)


def test_echo_then_generate_puts_prompt_and_answer_logprobs_in_one_list(client, tok):
    """lm-evaluation-harness 0.4.x asks for max_tokens=1 and drops the last entry."""
    ids = tok.encode(PROMPT)
    scored = client.completions.create(model="picochat", prompt=[ids], echo=True, max_tokens=0, logprobs=1)
    r = client.completions.create(model="picochat", prompt=[ids], echo=True, max_tokens=1, logprobs=1,
                                  temperature=0)
    lp, new = r.choices[0].logprobs, greedy(client, [ids], logprobs=1).choices[0]
    assert len(lp.tokens) == len(ids) + 1
    assert lp.token_logprobs[:-1] == pytest.approx(scored.choices[0].logprobs.token_logprobs[:len(ids)], abs=1e-4)
    assert lp.tokens[-1] == new.logprobs.tokens[0]
    assert r.choices[0].text == PROMPT + lp.tokens[-1]


def test_max_tokens_zero_streamed_and_without_echo(client, tok):
    r = client.completions.create(model="picochat", prompt=PROMPT, max_tokens=0)
    assert r.choices[0].text == "" and r.usage.completion_tokens == 0
    chunks = list(client.completions.create(model="picochat", prompt=[tok.encode(PROMPT)], echo=True,
                                            max_tokens=0, logprobs=1, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == PROMPT
    scored = [c.choices[0].logprobs for c in chunks if c.choices[0].logprobs]
    assert len(scored) == 1 and len(scored[0].tokens) == len(tok.encode(PROMPT))


# --- lm-evaluation-harness against the server -----------------------------------------------------
TASK = """task: picochat_story_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
"""
QUESTIONS = [
    ("The king walks under the river", ["light", "sword", "window"], 0),
    ("The queen answers slowly because the night is", ["gold", "dark", "garden"], 1),
    ("A friend speaks of gold and", ["castle", "morning", "silver"], 2),
    ("The brother and the sister", ["sleep", "letter", "river"], 0),
]


def loglikelihood(model, tok, context: str, continuation: str) -> float:
    """log P(continuation | context), tokenized as the harness does (the whole text, then split
    where the context's tokens end; no BOS)."""
    ctx, whole = tok.encode(context), tok.encode(context + continuation)
    assert whole[:len(ctx)] == ctx
    return sum(expected_logprobs(model, whole)[len(ctx) - 1:])


def test_lm_evaluation_harness_multiple_choice(server, chat_run, tok, reference, tmp_path):
    """`lm_eval --model local-completions` with its default, token-id requests: it runs, and its
    scores and accuracy are the model's own."""
    pytest.importorskip("lm_eval")
    data = tmp_path / "story_mc.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n"
                            for q, c, a in QUESTIONS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "story_mc.yaml").write_text(TASK.format(data=data))
    args = ",".join([f"base_url={server.url}/v1/completions", "model=picochat", "tokenizer_backend=huggingface",
                     f"tokenizer={chat_run / 'sft'}", "max_length=512", "max_retries=1"])
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", args,
                           "--tasks", "picochat_story_mc", "--include_path", str(tasks), "--output_path", str(out),
                           "--log_samples"],
                          check=False, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["picochat_story_mc"]
    samples = [json.loads(line) for f in out.rglob("samples_*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(s["doc_id"] for s in samples) == list(range(len(QUESTIONS)))
    right = 0
    for s in samples:
        question, choices, answer = QUESTIONS[s["doc_id"]]
        scores = [float(r[0][0]) for r in s["resps"]]          # the log file writes numbers as text
        expected = [loglikelihood(reference, tok, question, " " + c) for c in choices]
        assert scores == pytest.approx(expected, abs=1e-3)
        right += max(range(len(choices)), key=expected.__getitem__) == answer
    assert results["acc,none"] == pytest.approx(right / len(QUESTIONS))


# --- /v1/embeddings -----------------------------------------------------------------------------
def embed_raw(server, **body) -> httpx.Response:
    return httpx.post(server.url + "/v1/embeddings", json={"model": "picochat", **body}, timeout=60)


def floats(item: dict) -> list[float]:
    e = item["embedding"]
    if isinstance(e, str):      # base64: little-endian float32, as OpenAI sends it
        return list(torch.frombuffer(bytearray(base64.b64decode(e)), dtype=torch.float32).tolist())
    return e


def test_embedding_of_one_text(client, reference, tok):
    r = client.embeddings.create(model="picochat", input=PROMPT)
    assert r.model == "picochat-run-sft" and r.object == "list"
    (item,) = r.data
    v = torch.tensor(item.embedding)
    assert item.index == 0 and v.shape == (reference.config.dim,)
    assert float(v.norm()) == pytest.approx(1.0, abs=1e-5)
    assert r.usage.prompt_tokens == len(tok.encode(PROMPT, bos=True)) == r.usage.total_tokens


def test_embedding_is_the_mean_of_the_final_normed_states(client, reference, tok):
    ids = tok.encode(PROMPT, bos=True)
    with torch.no_grad():
        states = reference(torch.tensor([ids]), head=False)[0]
    mean = states[1:].mean(0)           # the BOS position is the same for every input: left out
    expected = mean / mean.norm()
    got = torch.tensor(client.embeddings.create(model="picochat", input=PROMPT).data[0].embedding)
    assert torch.allclose(got, expected, atol=1e-5)


def test_every_input_form_and_batching_matches_one_by_one(client, tok):
    texts = [PROMPT, OTHER, "gold", "The brother and the sister sleep while the morning comes"]
    one_by_one = [client.embeddings.create(model="picochat", input=t).data[0].embedding for t in texts]
    batch = client.embeddings.create(model="picochat", input=texts)
    assert [d.index for d in batch.data] == [0, 1, 2, 3]
    for got, want in zip(batch.data, one_by_one):
        assert got.embedding == pytest.approx(want, abs=1e-5)
    as_ids = client.embeddings.create(model="picochat", input=[tok.encode(t) for t in texts])
    for got, want in zip(as_ids.data, one_by_one):
        assert got.embedding == pytest.approx(want, abs=1e-5)
    single_ids = client.embeddings.create(model="picochat", input=tok.encode(PROMPT))
    assert single_ids.data[0].embedding == pytest.approx(one_by_one[0], abs=1e-5)
    again = client.embeddings.create(model="picochat", input=texts)
    assert [d.embedding for d in again.data] == [d.embedding for d in batch.data]     # deterministic
    assert batch.usage.prompt_tokens == sum(len(tok.encode(t, bos=True)) for t in texts)
    assert not torch.allclose(torch.tensor(one_by_one[0]), torch.tensor(one_by_one[1]), atol=1e-3)


def test_float_and_base64_encodings_agree(server):
    as_float = embed_raw(server, input=[PROMPT, OTHER], encoding_format="float").json()
    as_b64 = embed_raw(server, input=[PROMPT, OTHER], encoding_format="base64").json()
    assert isinstance(as_b64["data"][0]["embedding"], str)
    for f, b in zip(as_float["data"], as_b64["data"]):
        assert floats(b) == pytest.approx(f["embedding"], abs=1e-7)


def test_dimensions_native_size_or_400(client, reference):
    dim = reference.config.dim
    r = client.embeddings.create(model="picochat", input=PROMPT, dimensions=dim)
    assert len(r.data[0].embedding) == dim
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model="picochat", input=PROMPT, dimensions=dim // 2)


def test_embedding_input_errors(server, tok):
    long = embed_raw(server, input="king " * 2000)
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    assert embed_raw(server, input=[tok.encode(PROMPT), [10**9]]).status_code == 400
    assert embed_raw(server, input="").status_code == 400
    assert embed_raw(server, input=[]).status_code == 400
    assert embed_raw(server, input=[PROMPT], encoding_format="hex").status_code == 422
