"""Streamed text: whole UTF-8 characters out of token bytes, and stop strings held back."""

from __future__ import annotations

from collections.abc import Sequence


class TextStream:
    """Turns a stream of token ids into text pieces, holding back bytes until they form whole
    UTF-8 characters (one character may span several tokens)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = b""

    def push(self, token_id: int) -> str:
        self.pending += self.tokenizer.token_bytes(token_id)
        for cut in range(len(self.pending), max(len(self.pending) - 4, -1), -1):
            try:
                text = self.pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.pending = self.pending[cut:]
            return text
        # not a character being completed but broken bytes: show them replaced, move on
        return self.flush() if len(self.pending) > 4 else ""

    def flush(self) -> str:
        text, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return text


class StopStrings:
    """Holds back streamed text that could be the start of a stop string; reports a match."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.hit: str | None = None

    def push(self, text: str) -> str:
        """New text in -> text safe to show. After a match, `hit` is set and the text up to
        the stop string has been returned; nothing more is."""
        if self.hit is not None:
            return ""
        if not self.stops:
            return text
        self.held += text
        found = [(self.held.find(s), s) for s in self.stops if s in self.held]
        if found:
            at, self.hit = min(found)
            out, self.held = self.held[:at], ""
            return out
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.held)), 0, -1):
                if self.held.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.hit is not None else self.held), ""
        return out
