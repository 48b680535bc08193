"""The continuous-batching scheduler, in process: requests that join and leave a shared batch
(rows moved right for a longer prompt, compacted when one leaves, shifted left when the cache
fills) get exactly the tokens they would get alone; the batched top-p keeps exactly the sorted
rule's tokens; a failing request fails alone."""

from __future__ import annotations

import threading

import pytest
import torch

from picochat.chat import turn_stop_ids
from picochat.engine import (
    SamplingParams,
    TextStream,
    as_fast,
    generate_steps,
    sampling,
)
from picochat.model import Llama, ModelConfig
from picochat.serve import scheduler as S
from picochat.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def setup(prepared_run):
    tok = Tokenizer.load(prepared_run / "tokenizer")
    model = Llama(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=64))
    model.init_weights(3)
    with torch.no_grad():       # peaky, ordinary-token logits: long answers, no near-ties for argmax
        model.lm_head.weight.mul_(40)
        model.lm_head.weight[list(tok.special_tokens.values())] = 0
    return tok, as_fast(model.eval(), torch.float32)


class Collector:
    def __init__(self):
        self.text, self.done, self.event = [], None, threading.Event()

    def __call__(self, ev):
        if ev["type"] == "text":
            self.text.append(ev["text"])
        elif ev["type"] in ("done", "error"):
            self.done = ev
            self.event.set()


def alone(tok, net, prompt, max_tokens, stop_ids) -> str:
    ids = [step[0].id for step in generate_steps(net, [prompt], SamplingParams(temperature=0, max_tokens=max_tokens),
                                                 stop_ids) if step[0] is not None]
    stream = TextStream(tok)
    text = "".join(stream.push(t) for t in ids if t not in tok.special_tokens.values())
    return text + stream.flush()


def test_joining_and_leaving_rows_match_generating_alone(setup):
    tok, net = setup
    rng = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 250, (n,), generator=rng).tolist() for n in (3, 20, 7, 41, 12, 2, 30, 9)]
    budgets = [40, 10, 61, 15, 25, 5, 33, 50]
    # driven step by step (no thread), so joins, leaves and cache moves happen whatever the speed
    sched = S.Scheduler(net, tok, None, max_batch=3, max_queue=16, cache_len=net.config.max_seq_len + 6,
                        threaded=False)
    try:
        collectors = [Collector() for _ in prompts]
        reqs = [S.GenRequest(prompt=p, params=SamplingParams(temperature=0, max_tokens=b), emit=c, chat=False)
                for p, b, c in zip(prompts, budgets, collectors)]
        sched.submit(reqs[:2])                  # the rest arrive while those decode
        for _ in range(5):
            sched.tick()
        for r in reqs[2:]:
            sched.submit([r])
            sched.tick()
        for _ in range(1000):
            if all(c.event.is_set() for c in collectors):
                break
            sched.tick()
        stop_ids = turn_stop_ids(tok)
        for p, b, c in zip(prompts, budgets, collectors):
            assert c.done["type"] == "done", c.done
            assert "".join(c.text) == alone(tok, net, p, b, stop_ids)
        load = sched.load()
        assert load["inflight"] == 0 and load["errors"] == 0 and load["active"] == 0
        assert load["moves_right"] > 0 and load["shifts_left"] > 0      # both cache moves were exercised
        assert load["steps"] < sum(min(b, 64 - len(p)) for p, b in zip(prompts, budgets))   # rows shared steps
    finally:
        sched.close()


def test_a_failing_request_fails_alone(setup):
    tok, net = setup
    sched = S.Scheduler(net, tok, None, max_batch=4)
    try:
        good, bad = Collector(), Collector()
        sched.submit([S.GenRequest(prompt=[5] * 70, params=SamplingParams(temperature=0), emit=bad, chat=False),
                      S.GenRequest(prompt=[5, 6, 7], params=SamplingParams(temperature=0, max_tokens=8), emit=good,
                                   chat=False)])
        assert bad.event.wait(30) and good.event.wait(30)
        assert bad.done["type"] == "error" and "context" in bad.done["message"]
        assert good.done["type"] == "done" and good.done["completion_tokens"] == 8
        with pytest.raises(S.Busy):
            sched.submit([S.GenRequest(prompt=[1], params=SamplingParams(), emit=Collector()) for _ in range(200)])
    finally:
        sched.close()


@pytest.mark.parametrize("min_p", [0.0, 0.05])
def test_batched_top_p_keeps_the_sorted_rules_tokens(monkeypatch, min_p):
    torch.manual_seed(0)
    for scale in (0.1, 1, 3, 10):
        x = torch.randn(8, 2000) * scale
        for top_p in (0.3, 0.9, 0.95, 0.999):
            probs = x.softmax(-1)
            if min_p:
                probs = probs.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, 0)
            target = top_p * probs.sum(-1, keepdim=True)
            sv, si = probs.sort(-1, descending=True)
            ref = torch.zeros_like(probs).scatter(-1, si, sv * ((sv.cumsum(-1) - sv) <= target))
            drawn = []
            real = sampling.draw
            def spy(p, real=real, drawn=drawn):
                drawn.append(p.clone())
                return real(p)
            monkeypatch.setattr(sampling, "draw", spy)
            ids = sampling.sample_filtered(x, 0, top_p, min_p)
            monkeypatch.setattr(sampling, "draw", real)
            assert (ref.gather(-1, ids[:, None]) > 0).all()          # every draw is inside the nucleus
            masses = sorted(float(r.sum()) for p in drawn for r in p)
            assert masses == pytest.approx(sorted(ref.sum(-1).tolist()), abs=1e-5)
