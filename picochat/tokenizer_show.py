"""Show how text becomes tokens: each token coloured, its id, and compression (bytes/token)
on held-out text next to GPT-2 and GPT-4's cl100k.

    picochat tokenizer show --run R "some text"
"""

from __future__ import annotations

from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer, bytes_per_token, reference_tokenizers

COLOURS = ["on #3b4252", "on #5e3a4a", "on #2f5a45", "on #5a4a2a", "on #2c4a6a", "on #4a3a6a"]
HELD_OUT_CHARS = 2_000_000


def show(run: RunDir, text: str) -> None:
    from rich.console import Console
    from rich.text import Text

    tokenizer = Tokenizer.load(run.tokenizer)
    console = Console(highlight=False)
    ids = tokenizer.encode(text)
    coloured = Text()
    for i, token_id in enumerate(ids):
        piece = tokenizer.token_bytes(token_id).decode("utf-8", errors="backslashreplace")
        coloured.append(piece.replace("\n", "\\n\n"), style=COLOURS[i % len(COLOURS)])
    console.print(coloured)
    console.print(f"ids: {ids}")
    n_bytes = len(text.encode("utf-8"))
    console.print(f"{len(ids)} tokens, {n_bytes} bytes, {n_bytes / max(len(ids), 1):.2f} bytes/token "
                  f"(vocabulary {tokenizer.vocab_size})")
    held_out = held_out_text(run)
    if not held_out:
        console.print("no held-out text yet (run `picochat data build` and `data tokenize`) "
                      "for the compression comparison")
        return
    console.print(f"\ncompression on {sum(map(len, held_out)) / 1e6:.1f} MB of held-out (val) text:")
    rows = [("picochat", tokenizer.vocab_size, bytes_per_token(tokenizer.encode, held_out))]
    for name, enc in reference_tokenizers().items():
        rows.append((name, enc.n_vocab, bytes_per_token(enc.encode_ordinary, held_out)))
    for name, vocab, bpt in rows:
        console.print(f"  {name:9s} vocab {vocab:>7,}  {bpt:5.2f} bytes/token")


def held_out_text(run: RunDir) -> list[str]:
    from picochat.data.corpus import iter_documents

    texts, total = [], 0
    try:
        for doc in iter_documents(run, "val"):
            texts.append(doc["text"][: HELD_OUT_CHARS - total])
            total += len(texts[-1])
            if total >= HELD_OUT_CHARS:
                break
    except PicochatError:
        return []
    return texts
