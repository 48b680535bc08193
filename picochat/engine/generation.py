"""Token-level generation: batched, streaming, no chat protocol.

`generate_steps` yields one `Token` per prompt per decoding step; `generate` the bare ids. Rows
stop at a stop id, after `max_tokens`, or when the context is full. For answers (tool calls,
thinking, stop strings, finish reasons) use `Engine`, which drives a `Turn` per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from picochat.engine.fast import FastLlama, as_fast
from picochat.engine.sampling import Sampler, SamplingParams, Token
from picochat.model import Llama
from picochat.rundir import PicochatError


def generate_steps(model: "Llama | FastLlama", prompts: list[list[int]], params: SamplingParams,
                   stop_ids: Sequence[int] | set[int] = frozenset()) -> Iterator[list[Token | None]]:
    """Yield, per decoding step, one `Token` per prompt (None once that row has stopped).

    A row stops after emitting a stop id (the stop token itself is yielded), after
    `params.max_tokens` tokens, or when the context is full."""
    net = as_fast(model)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise PicochatError("every prompt needs at least one token")
    vocab = net.config.vocab_size
    if any(not 0 <= t < vocab for p in prompts for t in p):
        raise PicochatError(f"prompt token ids must be in [0, {vocab})")
    longest, context = max(len(p) for p in prompts), net.config.max_seq_len
    if longest >= context:
        raise PicochatError(f"prompt of {longest} tokens does not fit the {context}-token context")
    max_new = min(params.max_tokens, context - longest)
    B, device = len(prompts), net.device
    cache = net.new_cache(B, longest + max_new)
    cache.start = torch.tensor([longest - len(p) for p in prompts], device=device)
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts], device=device)
    stops = set(stop_ids) | set(params.stop_token_ids)
    sampler = Sampler(params, prompts, vocab, device)
    with torch.inference_mode():
        logits = net(ids, cache)
        done = [False] * B
        for step in range(max_new):
            next_ids, logprob, top_ids, top_lp = sampler(logits)
            out: list[Token | None] = []
            ids_list = next_ids.tolist()
            lp = logprob.tolist() if logprob is not None else None
            tops = (top_ids.tolist(), top_lp.tolist()) if top_ids is not None else None
            for b, t in enumerate(ids_list):
                if done[b]:
                    out.append(None)
                    continue
                out.append(Token(t, lp[b] if lp else None,
                                 list(zip(tops[0][b], tops[1][b])) if tops else None))
                if t in stops:
                    done[b] = True
            yield out
            if all(done) or step == max_new - 1:
                return
            # finished rows keep decoding (outputs ignored) so the batch stays rectangular
            logits = net(next_ids[:, None], cache)


def generate(model: "Llama | FastLlama", prompts: list[list[int]], params: SamplingParams,
             stop_ids: Sequence[int] | set[int] = frozenset()) -> Iterator[list[int | None]]:
    """Yield, per decoding step, one new token id per prompt (None once that row has stopped)."""
    for step in generate_steps(model, prompts, params, stop_ids):
        yield [None if t is None else t.id for t in step]
