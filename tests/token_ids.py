"""Token ids spelled by hand, for tests that play the model's part."""

from __future__ import annotations


def spell(tok, *parts: str) -> list[int]:
    """Ids of text pieces and special-token names (such as "<|end|>"), in order."""
    sp = tok.special_tokens
    return [i for p in parts for i in ([sp[p]] if p in sp else tok.encode(p))]
