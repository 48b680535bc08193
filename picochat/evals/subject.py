"""The model under evaluation: weights, tokenizer, how prompts are written, and batched
log-likelihoods of continuations.

Base models are prompted with plain text (few-shot examples, then the question); chat models
through the chat template, each few-shot example a user turn and an assistant turn. Both give
`(prompt ids, continuation ids)` pairs, scored here by `logprobs`: the prompt's keys and values
are computed once and shared by every continuation of it (the choices of a multiple-choice
question), so scoring costs about one prompt plus the choices, not one prompt per choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from picochat.chat import assistant, render_prompt, user
from picochat.model import KVCache, Llama, load_pretrained
from picochat.rundir import PicochatError
from picochat.tasks.base import TaskUnavailable  # noqa: F401 - evals raise and catch it under this name too
from picochat.tokenizer import Tokenizer




@dataclass
class Shot:
    """One worked example (or the question itself, with answer None)."""
    question: str
    answer: str | None = None


@dataclass
class Format:
    """How a base model sees a question: BIG-bench's layout (task prefix, then each example as
    input prefix + question + output prefix + answer, examples joined by a separator)."""
    prefix: str = ""
    q: str = "\nQ: "
    a: str = "\nA: "
    sep: str = "\n"


class Subject:
    """A model directory loaded for evaluation. `chat` selects the chat template for prompts."""

    def __init__(self, model: Llama, tokenizer: Tokenizer, chat: bool, dtype: torch.dtype = torch.float32,
                 name: str = "model"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat = chat
        self.dtype = dtype
        self.name = name
        self.device = next(model.parameters()).device
        self.context = model.config.max_seq_len
        # Scoring needs logits at a few positions per row (the continuation's), not at every
        # prompt position: the evaluator's own copy of the model runs up to its final norm
        # (output layer swapped for identity) and the output layer is applied to the positions
        # scored, in fp32.
        self._lm_head = model.lm_head
        self.head = model.lm_head.weight.detach().float()                   # (V, D)
        model.lm_head = torch.nn.Identity()
        self._trunk = model
        self._engine = None

    @classmethod
    def load(cls, folder: Path, chat: bool, dtype: str = "auto", device: str = "cpu") -> Subject:
        from picochat.hardware import pick_dtype

        dev = torch.device(device)
        model = load_pretrained(folder, device=dev)
        tokenizer = Tokenizer.load(folder)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise PicochatError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                                f"{model.config.vocab_size}; the directory mixes two runs")
        return cls(model, tokenizer, chat, pick_dtype(dtype, dev), name=str(folder))

    # --- prompts --------------------------------------------------------------------------------
    def prompt(self, shots: Sequence[Shot], question: str, fmt: Format | None = None) -> tuple[list[int], str]:
        """Ids of the few-shot examples + question, ready for the answer, and the text the answer
        must start with (base models: the output prefix's trailing space, so the answer's first
        word is tokenized as it would be inside running text)."""
        fmt = fmt or Format()
        if self.chat:
            messages = []
            for s in shots:
                messages += [user(self._chat_question(fmt, s.question)), assistant(s.answer or "")]
            messages.append(user(self._chat_question(fmt, question)))
            return render_prompt(self.tokenizer, messages), ""
        parts = [fmt.q + s.question + fmt.a + (s.answer or "") for s in shots]
        text = fmt.prefix + fmt.sep.join(parts + [fmt.q + question + fmt.a])
        lead = text[len(text.rstrip()):]          # "A: " -> prompt "A:", answers start with " "
        return [self.tokenizer.bos_id] + self.tokenizer.encode(text.rstrip()), lead

    @staticmethod
    def _chat_question(fmt: Format, question: str) -> str:
        return (fmt.prefix.strip() + "\n\n" + question.strip()) if fmt.prefix.strip() else question.strip()

    def answer_ids(self, lead: str, answer: str) -> list[int]:
        """Continuation ids of an answer: for chat models the whole assistant turn (text + <|end|>)."""
        if self.chat:
            return self.tokenizer.encode(answer) + [self.tokenizer.end_id]
        return self.tokenizer.encode(lead + answer)

    # --- scoring --------------------------------------------------------------------------------
    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def logprobs(self, prompts: list[list[int]], continuations: list[list[list[int]]],
                 batch_tokens: int = 4096) -> list[list[list[float]]]:
        """Per-token log-probabilities of each continuation given its prompt.

        prompts[i] (ids) has continuations[i] (a list of id lists); returns out[i][j][t] =
        log p(continuations[i][j][t] | prompt i + continuations[i][j][:t]). Prompts are batched
        by length (left-padded), then every continuation reads its prompt's cached keys/values."""
        for p, conts in zip(prompts, continuations):
            if not p or any(not c for c in conts):
                raise PicochatError("every prompt and continuation needs at least one token")
            if len(p) + max(len(c) for c in conts) > self.context:
                raise PicochatError(f"a prompt + continuation of {len(p) + max(len(c) for c in conts)} "
                                    f"tokens does not fit the {self.context}-token context")
        out: list[list[list[float]]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        batch: list[int] = []

        def fits(rows: list[int]) -> bool:
            # padded to the batch's longest prompt and continuation, every row must still fit the
            # context (rotary positions) and the batch the token budget
            longest = max(len(prompts[j]) for j in rows)
            cont = max(len(c) for j in rows for c in continuations[j])
            pairs = sum(len(continuations[j]) for j in rows)
            return longest + cont <= self.context and len(rows) * longest + pairs * cont <= batch_tokens

        for i in order:
            if batch and not fits(batch + [i]):
                for j, res in zip(batch, self._score_batch([prompts[j] for j in batch],
                                                           [continuations[j] for j in batch])):
                    out[j] = res
                batch = []
            batch.append(i)
        if batch:
            for j, res in zip(batch, self._score_batch([prompts[j] for j in batch],
                                                       [continuations[j] for j in batch])):
                out[j] = res
        return out

    def _score_batch(self, prompts: list[list[int]], conts: list[list[list[int]]]) -> list[list[list[float]]]:
        cfg, device = self._trunk.config, self.device
        E, P = len(prompts), max(len(p) for p in prompts)
        C = max(len(c) for cs in conts for c in cs)
        owner = [e for e, cs in enumerate(conts) for _ in cs]                 # pair -> its prompt
        flat = [c for cs in conts for c in cs]
        with self.autocast():
            # 1. prompts, left-padded: keys/values of every prompt, and the last position's state
            cache = KVCache(cfg, E, P, device=device)
            cache.start = torch.tensor([P - len(p) for p in prompts], device=device)
            ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts], device=device)   # (E, P)
            last = self._trunk(ids, cache)[:, -1].float()                                   # (E, D)
            # 2. every continuation after its prompt's cache (right-padding is never attended to
            # by the real tokens before it)
            idx = torch.tensor(owner, device=device)
            pairs = KVCache(cfg, len(flat), P + C, device=device)
            pairs.k[:, :, :, :P] = cache.k[:, idx]
            pairs.v[:, :, :, :P] = cache.v[:, idx]
            pairs.start, pairs.length = cache.start[idx], P
            cont = torch.tensor([c + [0] * (C - len(c)) for c in flat], device=device)     # (N, C)
            hidden = self._trunk(cont, pairs).float()                                       # (N, C, D)
        # the state predicting token t of a continuation: the prompt's last for t = 0, else t-1's
        states = torch.cat([last[idx][:, None], hidden[:, :-1]], dim=1)                    # (N, C, D)
        logp = F.linear(states, self.head).log_softmax(dim=-1)                             # (N, C, V)
        picked = logp.gather(-1, cont[..., None])[..., 0].tolist()                          # (N, C)
        res: list[list[list[float]]] = [[] for _ in prompts]
        for n, (e, c) in enumerate(zip(owner, flat)):
            res[e].append(picked[n][:len(c)])
        return res

    @contextlib.contextmanager
    def full_model(self):
        """The model with its output layer, for code that wants logits (bits per byte)."""
        self._trunk.lm_head = self._lm_head
        try:
            yield self._trunk
        finally:
            self._trunk.lm_head = torch.nn.Identity()

    # --- generation -----------------------------------------------------------------------------
    def engine(self):
        """A picochat.engine.Engine on this model's weights (decode-oriented copy, made once)."""
        if self._engine is None:
            from picochat.engine import Engine
            from picochat.tools import default_tools

            with self.full_model() as model:   # the engine copies the weights once
                self._engine = Engine(model, self.tokenizer, dtype=self.dtype, tools=default_tools())
        return self._engine
