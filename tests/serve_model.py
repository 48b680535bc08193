"""A tiny chat model for the server tests, made in seconds: a micro-sized Llama trained to
recite three conversations by heart (a client function call, a calculator call, a long story),
so greedy answers are known: the tests drive real weights, tokenizer and tool protocol."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
import torch.nn.functional as F

from picochat.chat import render_ids
from picochat.model import Llama, ModelConfig, save_pretrained
from picochat.serve.app import tools_note
from picochat.tokenizer import Tokenizer

STORY = ("The king walks under the river light, and the queen answers slowly because the night "
         "is dark. A friend speaks of gold and silver, of a sword and a letter, of a garden beyond "
         "the window; the brother and the sister sleep while the morning comes through the castle.")
WEATHER_Q = "What is the weather in Paris?"
WEATHER_ARGS = {"city": "Paris"}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}
CALC_Q = "What is 123*456?"


def conversations() -> list[list[dict]]:
    call = lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}}  # noqa: E731
    return [
        [{"role": "system", "content": tools_note([WEATHER_TOOL])},
         {"role": "user", "content": WEATHER_Q},
         {"role": "assistant", "content": "", "tool_calls": [call("get_weather", WEATHER_ARGS)]},
         {"role": "tool", "content": "sunny, 21 C"},
         {"role": "assistant", "content": "It is sunny in Paris."}],
        [{"role": "user", "content": CALC_Q},
         {"role": "assistant", "content": "", "tool_calls": [call("calculator", {"expression": "123*456"})]},
         {"role": "tool", "content": "56088"},
         {"role": "assistant", "content": "123*456 = 56088."}],
        [{"role": "user", "content": "Tell me a story."},
         {"role": "assistant", "content": STORY}],
    ]


def make_chat_model(tokenizer_dir: Path, out: Path, steps: int = 600, context: int = 1024) -> Path:
    """Train the reciting model and save it as a Hugging Face directory at `out`."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny matrices: one thread is faster, and 10x so on a busy machine
    tok = Tokenizer.load(tokenizer_dir)
    rows = [render_ids(tok, c) for c in conversations()]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tok.pad_id)
    target = torch.full((len(rows), T), -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r.ids)
        target[i, :len(r) - 1] = torch.tensor([t if m else -100 for t, m in zip(r.ids[1:], r.mask[1:])])
    model = Llama(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=context))
    model.init_weights(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for step in range(steps):
        # decayed and clipped: at a constant 2e-2 the loss bounced between 0.05 and 2 on some CPUs,
        # and the recitation the tests rely on came out wrong
        opt.param_groups[0]["lr"] = 1e-2 * 0.5 * (1 + math.cos(math.pi * step / steps))
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), target.view(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if loss.item() < 0.02:
            break
    torch.set_num_threads(threads)
    print(f"serve test model: {step + 1} steps, loss {loss.item():.3f}")
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    save_pretrained(model.eval(), out, tokenizer=tok)
    return out


def make_chat_run(prepared_run: Path, run: Path) -> Path:
    """A run folder with the prepared run's tokenizer and the reciting model as its sft stage."""
    from picochat.rundir import RunDir

    RunDir(run)
    (run / "tokenizer").mkdir(parents=True)
    for f in (prepared_run / "tokenizer").iterdir():
        shutil.copy(f, run / "tokenizer" / f.name)
    trained = _TRAINED.get(str(prepared_run))
    if trained is not None and (trained / "config.json").exists():   # one training per test session
        shutil.copytree(trained, run / "sft")
    else:
        _TRAINED[str(prepared_run)] = make_chat_model(run / "tokenizer", run / "sft")
    return run


_TRAINED: dict[str, Path] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`picochat serve` in its own process on a free port, ready when /health answers."""

    def __init__(self, run: Path, *extra: str, command: str = "serve"):
        self.run = Path(run)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = run / f"serve-{self.port}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "picochat.cli", command, "--run", str(run), "--stage", "sft",
             "--port", str(self.port), "--dtype", "fp32", *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + ("/health" if command == "serve" else "/"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start in 90 s")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=5).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()




def serving(run: Path, *args: str):
    """A LiveServer for a test module (a fixture yields from it): stopped at the end, and its log
    must then hold no traceback."""
    server = LiveServer(run, *args)
    try:
        yield server
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]
