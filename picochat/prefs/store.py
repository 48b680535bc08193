"""The comparisons store: runs/R/prefs/comparisons.jsonl, append-only JSON lines.

    store = Store(run.prefs)
    pair = store.add_pair(messages, answer_a, answer_b, source="verifier", split="train")
    store.add_label(pair, "a", labeler="verifier")        # a | b | tie | both_bad
    for c in store.comparisons(split="train"):             # labeled a/b: chosen and rejected
        ...

Three kinds of record, one per line, never rewritten:

    pair    a prompt (messages ending on a user turn), two answers (each a list of assistant and
            tool messages), where they came from, and whether reward models and DPO may train on
            it (split "train") or only measure on it ("heldout", decided by the prompt, so one
            prompt's pairs never straddle the split)
    label   a judgement of a pair: which answer is better (a, b, tie, both_bad), who judged
            (a person's name, or an automatic source), under which version of the labeling
            instructions, when, and optionally a better answer written by the labeler (an SFT
            example: `written_answers`)
    undo    withdraws one earlier label (the labeling page's undo)
    rating  a thumbs up or down on one answer, from the chat UI or the API (picochat serve); an
            up and a down on answers to the same prompt make a comparison (source "feedback"),
            and a down with no partner waits on the labeling page for a second answer

Every append is one write of one line on a file opened for appending, under an exclusive lock,
then fsync: the server, the labeling page and a collecting job may share a store. A line cut
short by a killed process (or any line that is not a record) is skipped with a count, never a
crash, and the next append starts on a fresh line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from picochat.chat import assistant, normalize
from picochat.rundir import PicochatError

LABELS = ("a", "b", "tie", "both_bad")
SPLITS = ("train", "heldout")
HELDOUT_FRACTION = 0.1          # of prompts, for pairs whose source does not decide the split
INSTRUCTIONS = Path(__file__).resolve().parent.parent.parent / "docs" / "labeling.md"


@lru_cache(maxsize=1)
def instructions_version() -> str:
    """The labeling instructions a label was given under: docs/labeling.md's content hash, so
    any edit to the instructions is a new version."""
    try:
        return "labeling.md@" + hashlib.sha256(INSTRUCTIONS.read_bytes()).hexdigest()[:10]
    except OSError:
        return "labeling.md@unknown"


def answer_messages(answer) -> list[dict]:
    """An answer as chat messages: a string is one assistant message; a list of messages must be
    assistant and tool turns that end on the assistant's."""
    messages = [assistant(answer)] if isinstance(answer, str) else normalize(list(answer))
    if not messages or any(m["role"] not in ("assistant", "tool") for m in messages) \
            or messages[-1]["role"] != "assistant":
        raise PicochatError("an answer is a string, or assistant and tool messages ending on the assistant's")
    return messages


def answer_text(messages: list[dict]) -> str:
    """What an answer says, for pages and listings: its final assistant text, with the tool
    calls it made before it."""
    calls = [f"[{c['function']['name']} {json.dumps(c['function']['arguments'])}]"
             for m in messages for c in m.get("tool_calls", [])]
    return " ".join([*calls, messages[-1].get("content", "")]).strip()


def prompt_key(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def heldout_by_prompt(messages: list[dict]) -> str:
    """The split of a prompt whose source does not decide it: a fixed 10% of prompts, by hash."""
    return "heldout" if int(prompt_key(messages)[:8], 16) / 16 ** 8 < HELDOUT_FRACTION else "train"


@dataclass
class Pair:
    id: str
    messages: list[dict]
    a: list[dict]
    b: list[dict]
    source: str
    split: str
    meta: dict = field(default_factory=dict)


@dataclass
class Label:
    id: str
    pair: str
    label: str
    labeler: str
    source: str
    instructions: str
    time: float
    better: list[dict] | None = None


@dataclass
class Rating:
    id: str
    messages: list[dict]
    answer: list[dict]
    rating: str             # "up" | "down"
    labeler: str
    time: float


@dataclass
class Comparison:
    """A labeled pair with a winner: what reward models and DPO train on."""
    pair: Pair
    label: Label

    @property
    def chosen(self) -> list[dict]:
        return self.pair.a if self.label.label == "a" else self.pair.b

    @property
    def rejected(self) -> list[dict]:
        return self.pair.b if self.label.label == "a" else self.pair.a


@dataclass
class Contents:
    pairs: dict[str, Pair]
    labels: list[Label]              # in order, undone ones removed
    skipped_lines: int
    ratings: list[Rating] = field(default_factory=list)

    def rating_pairs(self) -> list[Comparison]:
        """Up- against down-rated answers to the same prompt, as comparisons (source "feedback")."""
        by_prompt: dict[str, dict[str, list[Rating]]] = {}
        for r in self.ratings:
            by_prompt.setdefault(prompt_key(r.messages), {"up": [], "down": []})[r.rating].append(r)
        out = []
        for sides in by_prompt.values():
            for up, down in zip(sides["up"], sides["down"]):
                if up.answer == down.answer:
                    continue
                pair = Pair(f"{up.id}-{down.id}", up.messages, up.answer, down.answer, "feedback",
                            heldout_by_prompt(up.messages))
                out.append(Comparison(pair, Label(f"{up.id}-{down.id}", pair.id, "a", up.labeler, "feedback",
                                                  instructions_version(), max(up.time, down.time))))
        return out

    def unanswered_downs(self) -> list[Rating]:
        """Down-rated answers that no up-rated answer or labeled pair has answered yet."""
        answered = {prompt_key(c.pair.messages) for c in self.rating_pairs()}
        answered |= {prompt_key(self.pairs[lab.pair].messages) for lab in self.labels}
        return [r for r in self.ratings if r.rating == "down" and prompt_key(r.messages) not in answered]


class Store:
    """A run's comparisons (runs/R/prefs/). Reading an absent store gives an empty one."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "comparisons.jsonl"

    # --- writing ---------------------------------------------------------------------------------
    def add_pair(self, messages: list[dict], a, b, source: str, split: str | None = None,
                 meta: dict | None = None) -> Pair:
        """Store a prompt and two answers (returns the existing pair when the same one is stored)."""
        messages = normalize(list(messages))
        if not messages or messages[-1]["role"] != "user":
            raise PicochatError("a pair's prompt is a conversation that ends on a user message")
        a, b = answer_messages(a), answer_messages(b)
        if a == b:
            raise PicochatError("the two answers of a pair are identical: there is nothing to compare")
        split = split or heldout_by_prompt(messages)
        if split not in SPLITS:
            raise PicochatError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        pair_id = hashlib.sha256(json.dumps([messages, a, b], sort_keys=True).encode()).hexdigest()[:16]
        pair = Pair(pair_id, messages, a, b, source, split, meta or {})
        self._append([{"kind": "pair", **pair.__dict__, "time": time.time()}])
        return pair

    def add_label(self, pair: "Pair | str", label: str, labeler: str, source: str | None = None,
                  better=None, known: dict[str, Pair] | None = None) -> Label:
        """Judge a stored pair. `better`: an answer the labeler wrote instead (kept as an SFT
        example). `known`: the pairs already read, to skip rereading the store."""
        pair_id = pair if isinstance(pair, str) else pair.id
        if label not in LABELS:
            raise PicochatError(f"a label is one of {', '.join(LABELS)}, not {label!r}")
        if not str(labeler or "").strip():
            raise PicochatError("a label needs a labeler: a person's name or an automatic source")
        pairs = known if known is not None else self.read().pairs
        if pair_id not in pairs:
            raise PicochatError(f"no pair {pair_id!r} in {self.path}; label only pairs the store holds")
        record = Label(os.urandom(8).hex(), pair_id, label, labeler.strip(), source or pairs[pair_id].source,
                       instructions_version(), time.time(),
                       answer_messages(better) if better else None)
        self._append([{"kind": "label", **record.__dict__}])
        return record

    def add_compared(self, messages: list[dict], chosen, rejected, source: str, split: str | None = None,
                     meta: dict | None = None, rng: random.Random | None = None) -> Pair:
        """A pair an automatic source has already judged: stored with the better answer on a
        random side (so neither side wins by position), and its label by the source."""
        first_is_chosen = (rng or random).random() < 0.5
        a, b = (chosen, rejected) if first_is_chosen else (rejected, chosen)
        pair = self.add_pair(messages, a, b, source, split, meta)
        self.add_label(pair, "a" if first_is_chosen else "b", labeler=source, known={pair.id: pair})
        return pair

    def add_rating(self, messages: list[dict], answer, rating: str, labeler: str = "user") -> Rating:
        """A thumbs up or down on one answer (the server's feedback endpoint)."""
        messages = normalize(list(messages))
        if not messages or messages[-1]["role"] != "user":
            raise PicochatError("feedback rates an answer to a conversation that ends on a user message")
        if rating not in ("up", "down"):
            raise PicochatError(f"a rating is up or down, not {rating!r}")
        record = Rating(os.urandom(8).hex(), messages, answer_messages(answer), rating, labeler or "user", time.time())
        self._append([{"kind": "rating", **record.__dict__}])
        return record

    def undo(self, label_id: str, labeler: str) -> None:
        if label_id not in {lab.id for lab in self.read().labels}:
            raise PicochatError(f"no label {label_id!r} to undo")
        self._append([{"kind": "undo", "label": label_id, "labeler": labeler, "time": time.time()}])

    def _append(self, records: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _ends_mid_line(self.path):       # a killed writer's torn line: start a new one
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as e:
            raise PicochatError(f"could not append to {self.path} ({e}); nothing was stored: free "
                                "some disk space and try again") from e
        finally:
            os.close(fd)

    # --- reading ---------------------------------------------------------------------------------
    def read(self) -> Contents:
        pairs: dict[str, Pair] = {}
        labels: dict[str, Label] = {}
        ratings: list[Rating] = []
        skipped = 0
        for record in self._records():
            if record is None:
                skipped += 1
                continue
            kind = record.pop("kind")
            if kind == "pair":
                pairs.setdefault(record["id"], _make(Pair, record))
            elif kind == "label" and record["pair"] in pairs:
                labels[record["id"]] = _make(Label, record)
            elif kind == "undo":
                labels.pop(record["label"], None)
            elif kind == "rating":
                ratings.append(_make(Rating, record))
            else:
                skipped += 1
        return Contents(pairs, list(labels.values()), skipped, ratings)

    def _records(self) -> Iterator[dict | None]:
        """Each line's record; None for a line that is not one (torn, or not JSON)."""
        with contextlib.suppress(FileNotFoundError), open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    yield None
                    continue
                yield record if _valid(record) else None

    def comparisons(self, split: str | None = None, sources: set[str] | None = None) -> list[Comparison]:
        """Every label that names a winner (a or b), with its pair, and the pairs ratings make;
        ties and "both bad" are not comparisons (they are counted by `summary`)."""
        contents = self.read()
        found = [Comparison(contents.pairs[lab.pair], lab) for lab in contents.labels if lab.label in ("a", "b")]
        return [c for c in found + contents.rating_pairs()
                if (split is None or c.pair.split == split) and (sources is None or c.label.source in sources)]

    def written_answers(self) -> list[list[dict]]:
        """Conversations labelers wrote a better answer for: prompt + their answer (SFT data)."""
        contents = self.read()
        return [contents.pairs[lab.pair].messages + lab.better for lab in contents.labels if lab.better]


FIELDS = {"pair": {"id", "messages", "a", "b", "source", "split"},
          "label": {"id", "pair", "label", "labeler", "source", "instructions", "time"},
          "undo": {"label"}, "rating": {"id", "messages", "answer", "rating", "time"}}


def _make(cls, record: dict):
    """A dataclass from a record, ignoring fields a later version may add."""
    return cls(**{k: v for k, v in record.items() if k in cls.__dataclass_fields__})


def _valid(record) -> bool:
    return isinstance(record, dict) and record.get("kind") in FIELDS and FIELDS[record["kind"]] <= set(record)


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


# --- what was collected ---------------------------------------------------------------------------
def summary(contents: Contents) -> dict[str, dict]:
    """Per label source: pairs, labels by value, train/held-out comparisons, labelers, and, where
    two labelers judged the same pair, how often they agreed."""
    out: dict[str, dict] = {}
    by_pair: dict[str, list[Label]] = {}
    for lab in contents.labels:
        entry = out.setdefault(lab.source, {"pairs": set(), "labels": dict.fromkeys(LABELS, 0),
                                            "train": 0, "heldout": 0, "labelers": set(), "written": 0})
        pair = contents.pairs[lab.pair]
        entry["pairs"].add(lab.pair)
        entry["labels"][lab.label] += 1
        entry[pair.split] += lab.label in ("a", "b")
        entry["labelers"].add(lab.labeler)
        entry["written"] += bool(lab.better)
        by_pair.setdefault(lab.pair, []).append(lab)
    for source, entry in out.items():
        agree = total = 0
        for labs in by_pair.values():
            mine = {lab.labeler: lab.label for lab in labs if lab.source == source}   # a labeler's last word
            verdicts = list(mine.values())
            for i in range(len(verdicts)):
                for j in range(i + 1, len(verdicts)):
                    total += 1
                    agree += verdicts[i] == verdicts[j]
        entry.update(pairs=len(entry["pairs"]), labelers=sorted(entry["labelers"]),
                     agreement={"pairs_compared": total, "agreed": agree,
                                "rate": round(agree / total, 3) if total else None})
    unlabeled = set(contents.pairs) - set(by_pair)
    if unlabeled:
        out["(unlabeled)"] = {"pairs": len(unlabeled)}
    if contents.ratings:
        ups = sum(r.rating == "up" for r in contents.ratings)
        out["(ratings)"] = {"up": ups, "down": len(contents.ratings) - ups, "pairs": len(contents.rating_pairs())}
    return out
