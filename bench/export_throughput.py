"""Exported models: run.py vs picochat's engine vs llama.cpp on the same GGUF, and what q8_0 costs.

    python bench/export_throughput.py [--run runs/demo] [--stage sft] [--new-tokens 128] [--reps 3]
                                      [--threads 1] [--windows 32]

1. Writes the stage's model as f32 and q8_0 GGUF into a temporary folder (the run is only read).
2. Decoding speed at batch 1: greedy, a fixed number of new tokens after a 16-token prompt,
   prefill excluded, best of `--reps` (the machine may be shared; the best run is the least
   disturbed), wall-clock and CPU-time rates. Engines: picochat's engine (FastLlama, fp32; the
   named baseline), run.py (NumPy; the f32 and the q8_0 file, dequantized to fp32 at load), and
   llama.cpp through llama-cpp-python (the f32 and the q8_0 file, its own kernels) if installed.
   All use `--threads` threads.
3. Size and perplexity: file sizes, and held-out perplexity of the `--ppl-stage` model (base by
   default: it was trained on documents) over the first `--windows` context-length windows of
   the run's validation tokens, with run.py's forward on both files and llama.cpp's if present.

Measured on runs/demo (cpu-tiny, 2-core CPU, 1 thread, load average 1.0, --reps 5): picochat
engine 332 tok/s (baseline), run.py 315 (f32 file) / 463 (q8_0 file), llama.cpp 1268 (f32) /
3107 (q8_0); q8_0 3.63x smaller, perplexity +0.02% (run.py) / +0.03% (llama.cpp).

Not a test: prints figures and ratios. Check `uptime` first; figures under load are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "The history of the city begins with a small village by the river, where"


def picochat_decoder(model_dir: Path, ids: list[int], new: int):
    """A function that prefills and returns an iterator doing one decoding step per item."""
    import torch

    from picochat.engine import FastLlama, SamplingParams, generate
    from picochat.model import load_pretrained

    net = FastLlama(load_pretrained(model_dir).eval(), torch.float32)

    def start():
        steps = generate(net, [ids], SamplingParams(temperature=0, max_tokens=new + 1))
        next(steps)                                   # prefill + first token: not timed
        return steps
    return start


def run_py_decoder(run_py, path: Path, ids: list[int], new: int):
    import numpy as np

    meta, tensors = run_py.read_gguf(path)
    model = run_py.Llama(meta, tensors)

    def start():
        logits = model.forward(ids, 0)

        def steps(logits):
            for pos in range(len(ids), len(ids) + new):
                logits = model.forward([int(np.argmax(logits))], pos)
                yield
        return steps(logits)
    return start


def llama_cpp_decoder(path: Path, ids: list[int], new: int, threads: int):
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(str(path), n_ctx=len(ids) + new + 8, n_threads=threads, n_batch=64,
                          verbose=False)

    def last_logits():   # without logits_all, llama-cpp-python keeps no Python copy: read the context's
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    def start():
        llm.reset()
        llm.eval(ids)

        def steps():
            for _ in range(new):
                llm.eval([int(np.argmax(last_logits()))])
                yield
        return steps()
    return start


def best_rate(start, reps: int) -> tuple[float, float]:
    """Best tokens/s over reps runs, wall-clock and this process's CPU time (CPU time does not
    count the time other processes held the cores)."""
    results = []
    for _ in range(reps):
        steps = start()
        wall, cpu, n = time.perf_counter(), time.process_time(), 0
        for _ in steps:
            n += 1
        results.append((n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)))
    return max(r[0] for r in results), max(r[1] for r in results)


def perplexity_run_py(run_py, path: Path, windows) -> float:
    import numpy as np

    meta, tensors = run_py.read_gguf(path)
    model = run_py.Llama(meta, tensors)
    nll = []
    for w in windows:
        logits = model.forward(w[:-1], 0, all_logits=True).astype(np.float64)
        top = logits.max(-1)
        logz = np.log(np.exp(logits - top[:, None]).sum(-1)) + top
        nll.extend(logz - logits[np.arange(len(w) - 1), w[1:]])
    return float(np.exp(np.mean(nll)))


def perplexity_llama_cpp(path: Path, windows, threads: int) -> float:
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(str(path), n_ctx=len(windows[0]), n_threads=threads, n_batch=len(windows[0]),
                          logits_all=True, verbose=False)
    nll = []
    for w in windows:
        llm.reset()
        llm.eval(w[:-1])
        logits = np.asarray(llm.scores[:len(w) - 1], dtype=np.float64)
        top = logits.max(-1)
        logz = np.log(np.exp(logits - top[:, None]).sum(-1)) + top
        nll.extend(logz - logits[np.arange(len(w) - 1), w[1:]])
    return float(np.exp(np.mean(nll)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--stage", default="sft", help="model timed for decoding speed")
    p.add_argument("--ppl-stage", default="base", help="model whose perplexity is measured")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--windows", type=int, default=32)
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)       # before NumPy and torch load their BLAS
    import numpy as np
    import torch

    from picochat.export import run as run_py
    from picochat.export.gguf import write_gguf
    from picochat.model import load_pretrained
    from picochat.rundir import RunDir
    from picochat.tokenizer import Tokenizer

    torch.set_num_threads(args.threads)
    try:
        import llama_cpp  # noqa: F401
        have_llama = True
    except ImportError:
        have_llama = False
        print("llama-cpp-python is not installed: llama.cpp rows skipped (pip install 'picochat[export]')")
    run = RunDir(args.run, create=False)
    print(f"load average {os.getloadavg()[0]:.2f} (figures under load are noisy); {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for stage in dict.fromkeys([args.stage, args.ppl_stage]):
            folder = run.model(stage)
            model, tok = load_pretrained(folder).eval(), Tokenizer.load(folder)
            for dtype in ("f32", "q8_0"):
                files[stage, dtype] = write_gguf(model, tok, Path(tmp) / f"{stage}-{dtype}.gguf", dtype=dtype)
        folder = run.model(args.stage)
        tok = Tokenizer.load(folder)
        ids = tok.encode(PROMPT, bos=True)[:16]
        new = min(args.new_tokens, load_pretrained(folder).config.max_seq_len - len(ids) - 1)

        print(f"\ndecoding, batch 1, greedy, {new} new tokens after a {len(ids)}-token prompt "
              f"({args.stage} model, best of {args.reps})")
        engines = [("picochat engine fp32 (baseline)", lambda: picochat_decoder(folder, ids, new))]
        for dtype in ("f32", "q8_0"):
            f = files[args.stage, dtype]
            engines.append((f"run.py (NumPy) {dtype} file", lambda f=f: run_py_decoder(run_py, f, ids, new)))
        if have_llama:
            for dtype in ("f32", "q8_0"):
                f = files[args.stage, dtype]
                engines.append((f"llama.cpp {dtype}", lambda f=f: llama_cpp_decoder(f, ids, new, args.threads)))
        rates = {}
        for name, make in engines:
            rates[name] = best_rate(make(), args.reps)
        base_wall, base_cpu = rates[engines[0][0]]
        print(f"{'engine':34s} {'tok/s':>8s} {'CPU tok/s':>10s} {'x baseline':>11s} {'(CPU)':>7s}")
        for name, (wall, cpu) in rates.items():
            print(f"{name:34s} {wall:8.1f} {cpu:10.1f} {wall / base_wall:10.2f}x {cpu / base_cpu:6.2f}x")

        val_files = sorted((run.tokens).glob("val_*.bin"))
        f32, q8 = files[args.ppl_stage, "f32"], files[args.ppl_stage, "q8_0"]
        size_ratio = f32.stat().st_size / q8.stat().st_size
        print(f"\nsize: f32 {f32.stat().st_size / 1e6:.2f} MB, q8_0 {q8.stat().st_size / 1e6:.2f} MB "
              f"({size_ratio:.2f}x smaller)")
        if not val_files:
            print("no validation tokens in the run: perplexity skipped")
            return
        context = load_pretrained(run.model(args.ppl_stage)).config.max_seq_len
        val = np.fromfile(val_files[0], dtype=json.loads((run.tokens / "index.json").read_text())["dtype"])
        windows = [val[i:i + context].tolist() for i in range(0, len(val) - context, context)][:args.windows]
        n_tokens = sum(len(w) - 1 for w in windows)
        print(f"held-out perplexity, {args.ppl_stage} model, {len(windows)} windows x {context} tokens "
              f"({n_tokens} predictions)")
        scores = {"run.py": (perplexity_run_py(run_py, f32, windows), perplexity_run_py(run_py, q8, windows))}
        if have_llama:
            scores["llama.cpp"] = (perplexity_llama_cpp(f32, windows, args.threads),
                                   perplexity_llama_cpp(q8, windows, args.threads))
        for name, (a, b) in scores.items():
            print(f"{name:10s} f32 {a:8.3f}  q8_0 {b:8.3f}  ({100 * (b / a - 1):+.2f}%)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
