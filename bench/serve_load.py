"""Load test for `picochat serve`: N concurrent streaming clients against the real server.

    python bench/serve_load.py [--run R --stage sft] [--clients 32] [--seconds 60] [--single-seconds 20]

Starts `picochat serve` on a free port (a cpu-tiny model: the run's model when --run has one,
else a randomly initialised cpu-tiny-shaped model with the run's tokenizer, or with a tokenizer
trained here on generated text), then

1. one streaming client for --single-seconds: its tokens/s is the baseline;
2. --clients streaming clients for --seconds, each sending requests back to back.

Prints requests, errors, requests/s, aggregate tokens/s, p50/p95 time to first token, and the
aggregate's ratio to the single client's tokens/s (the continuous-batching gain; target >= 4x).
Tokens are counted from each response's usage (stream_options.include_usage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["Tell me a story about a king.", "What is the capital of France?", "Write a short poem about the sea.",
           "Explain how a river forms.", "Who are you?", "Give me three tips for sleeping well.",
           "What is 12 times 34?", "Describe a castle at night."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_run(args, work: Path) -> tuple[Path, str]:
    """A run folder holding a model at some stage; returns (run, stage)."""
    from picochat.config import get_preset
    from picochat.model import Llama, save_pretrained
    from picochat.rundir import RunDir
    from picochat.tokenizer import Tokenizer

    if args.run and (Path(args.run) / args.stage / "config.json").exists():
        return Path(args.run), args.stage
    run = work / "run"
    RunDir(run)
    if args.run and (Path(args.run) / "tokenizer" / "tokenizer.json").exists():
        tok = Tokenizer.load(Path(args.run) / "tokenizer")
    else:
        rng = random.Random(0)
        words = ("the a king queen castle river light dark night morning speaks answers walks sleeps gold "
                 "silver sword letter garden window friend enemy brother sister love fear war peace quickly "
                 "slowly never always under over through beyond and but or because when while").split()
        texts = [" ".join(rng.choice(words) + rng.choice(["", "", "s", "ing", "ed", ",", "."]) +
                          (str(rng.randint(0, 999)) if rng.random() < 0.05 else "")
                          for _ in range(2000)) for _ in range(200)]
        tok = Tokenizer.train(texts, vocab_size=8192)
    tok.save(run / "tokenizer")
    config = get_preset("cpu-tiny").model
    config.vocab_size = tok.vocab_size
    model = Llama(config)
    model.init_weights(0)
    save_pretrained(model, run / "sft", tokenizer=tok)
    print(f"random-init cpu-tiny model: {config.n_layers} layers x {config.dim} dim, vocab {tok.vocab_size}, "
          f"context {config.max_seq_len}")
    return run, "sft"


async def one_request(client, rng, max_tokens: int) -> tuple[float, int]:
    """(time to first token, tokens) of one streamed chat completion. The client is plain httpx
    reading server-sent events (the same bytes the openai package reads; tests/test_serve.py
    drives the server with that package) so the load generator takes little of the CPU it
    shares with the server."""
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    body = {"model": "picochat", "messages": [{"role": "user", "content": rng.choice(PROMPTS)}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0.8, "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if ttft is None and '"content":"' in line.replace(": ", ":") and '"content":""' not in line.replace(": ", ":"):
                ttft = time.perf_counter() - t0
            if '"usage"' in line:
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    raise RuntimeError(chunk["error"]["message"])
                tokens = (chunk.get("usage") or {}).get("completion_tokens", tokens)
            elif '"error"' in line and json.loads(line[6:]).get("error"):
                raise RuntimeError(line[:200])
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens


async def load(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    import httpx

    client = httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients + 8))
    stats = {"requests": 0, "errors": 0, "tokens": 0, "ttft": [], "error_kinds": {}}
    start = time.perf_counter()
    end = start + seconds

    async def worker(i: int):
        rng = random.Random(i)
        while time.perf_counter() < end:
            try:
                ttft, tokens = await one_request(client, rng, max_tokens)
                stats["requests"] += 1
                stats["tokens"] += tokens
                stats["ttft"].append(ttft)
            except Exception as e:  # noqa: BLE001 - counted and reported
                stats["errors"] += 1
                kind = type(e).__name__
                stats["error_kinds"][kind] = stats["error_kinds"].get(kind, 0) + 1
                await asyncio.sleep(0.1)

    await asyncio.gather(*(worker(i) for i in range(clients)))
    stats["elapsed"] = time.perf_counter() - start
    await client.aclose()
    return stats


def summary(name: str, s: dict) -> float:
    el = s["elapsed"]
    ttft = sorted(s["ttft"]) or [float("nan")]
    p = lambda q: ttft[min(len(ttft) - 1, int(q * len(ttft)))]  # noqa: E731
    tps = s["tokens"] / el
    print(f"{name:>10}: {s['requests']} requests, {s['errors']} errors {s['error_kinds'] or ''}in {el:.1f} s | "
          f"{s['requests'] / el:.2f} req/s | {tps:.1f} tokens/s | TTFT p50 {1000 * statistics.median(ttft):.0f} ms, "
          f"p95 {1000 * p(0.95):.0f} ms")
    return tps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a run with a model (or just a tokenizer) to serve")
    ap.add_argument("--stage", default="sft")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--single-seconds", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    import httpx

    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    proc = None
    try:
        run, stage = prepare_run(args, work)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (work / "server.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "picochat.cli", "serve", "--run", str(run), "--stage", stage,
                                 "--port", str(port), "--max-concurrency", str(args.clients), "--max-queue", "64",
                                 "--dtype", args.dtype], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if proc.poll() is not None:
                print((work / "server.log").read_text())
                return 1
        print(f"server: {httpx.get(url + '/health').json()}")
        asyncio.run(load(url, 1, 3, args.max_tokens))     # warm-up
        single = summary("1 client", asyncio.run(load(url, 1, args.single_seconds, args.max_tokens)))
        stats = asyncio.run(load(url, args.clients, args.seconds, args.max_tokens))
        many = summary(f"{args.clients} clients", stats)
        ratio = many / single if single else float("nan")
        print(f"aggregate tokens/s = {ratio:.1f}x one client's ({many:.1f} vs {single:.1f}); target >= 4x: "
              f"{'ok' if ratio >= 4 else 'BELOW'}; errors: {stats['errors']} ({'ok' if not stats['errors'] else 'FAIL'})")
        print(f"server after: {httpx.get(url + '/health').json()}")
        return 0 if stats["errors"] == 0 and ratio >= 4 else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
