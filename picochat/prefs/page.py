"""The labeling page: a person compares two answers of the model in the browser.

    picochat label --run R [--stage sft] [--port 8001] [--labeler NAME]

The page shows a conversation, two answers side by side and the labeling instructions
(docs/labeling.md) beside them. The labeler picks A, B, tie or both bad (keys 1, 2, t, x),
may write a better answer (kept as an SFT example), and can undo (u). Every label carries the
labeler's name and the instructions' version, and goes into runs/R/prefs/comparisons.jsonl.

What comes next, in order: a stored pair nobody has labeled (the verifier's, a judge's
leftovers, another labeler's pending one); an answer a user rated down in the chat UI, against
a fresh answer to the same conversation (the loop from deployment); else a fresh pair, two
answers sampled at different temperatures to a prompt from picochat's task pools. A pair this
labeler has already judged is not shown again; one judged by someone else may be, which is how
agreement between labelers gets measured (`picochat prefs`).

    GET  /                  the page (picochat/serve/static/label.html, label.js)
    GET  /api/next          the next pair for ?labeler=NAME, and the progress counts
    POST /api/label         {"pair", "label", "labeler", "better"?} -> {"label_id", "progress"}
    POST /api/undo          {"label_id", "labeler"}
    GET  /api/instructions  the labeling instructions (markdown) and their version
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

from pydantic import BaseModel

from picochat.prefs.store import INSTRUCTIONS, LABELS, Store, answer_text, instructions_version
from picochat.rundir import PicochatError, RunDir

STATIC = Path(__file__).resolve().parent.parent / "serve" / "static"    # shared with the chat UI (markdown.js)
PAGE_SOURCE = "label-page"          # pairs the page sampled itself
HUMAN = "human"                     # the source of every label given on the page
TEMPERATURES = (0.7, 1.2)


class LabelQueue:
    """Picks each labeler's next pair, sampling fresh ones from the model when none waits."""

    def __init__(self, store: Store, engine, seed: int = 0):
        self.store, self.engine = store, engine
        self.rng = random.Random(seed)
        self.lock = threading.Lock()          # one generation at a time; the store locks itself

    def next_pair(self, labeler: str) -> dict:
        with self.lock:
            contents = self.store.read()
            mine = {lab.pair for lab in contents.labels if lab.labeler == labeler}
            labeled = {lab.pair for lab in contents.labels}
            waiting = [p for p in contents.pairs.values() if p.id not in labeled]
            pair = waiting[0] if waiting else self._fresh(contents, mine)
            return {"pair": pair.id, "messages": pair.messages, "a": answer_text(pair.a), "b": answer_text(pair.b),
                    "source": pair.source, "progress": self.progress(labeler)}

    def _fresh(self, contents, mine: set[str]):
        downs = contents.unanswered_downs()
        for _ in range(4):         # a sampled pair can come out identical: try again
            if downs:
                rated = downs[0]
                answer = self._sample(rated.messages, [TEMPERATURES[1]])[0]
                if answer != rated.answer:
                    return self.store.add_pair(rated.messages, rated.answer, answer, "feedback",
                                               meta={"rating": rated.id})
                downs = downs[1:]
                continue
            messages = self._prompt()
            a, b = self._sample(messages, list(TEMPERATURES))
            if a != b:
                pair = self.store.add_pair(messages, a, b, PAGE_SOURCE, meta={"temperatures": TEMPERATURES})
                if pair.id not in mine:
                    return pair
        raise PicochatError("the model gave the same answer every time; nothing to compare")

    def _prompt(self) -> list[dict]:
        from picochat.tasks import GENERATED

        task = GENERATED[self.rng.choice(sorted(GENERATED))]
        return task.problems(self.rng, 1)[0].prompt

    def _sample(self, messages: list[dict], temperatures: list[float]) -> list[list[dict]]:
        from picochat.chat import render_prompt
        from picochat.engine import SamplingParams

        ids = render_prompt(self.engine.tokenizer, messages)
        return [self.engine.generate_batch([ids], SamplingParams(temperature=t, max_tokens=128,
                                                                 seed=self.rng.randrange(2**31)))[0].messages
                for t in temperatures]

    def progress(self, labeler: str) -> dict:
        contents = self.store.read()
        labeled = {lab.pair for lab in contents.labels}
        return {"yours": sum(lab.labeler == labeler for lab in contents.labels),
                "human_labels": sum(lab.source == HUMAN for lab in contents.labels),
                "waiting": sum(p not in labeled for p in contents.pairs),
                "down_rated": len(contents.unanswered_downs())}


class LabelBody(BaseModel):
    pair: str
    label: str
    labeler: str
    better: str | None = None


class UndoBody(BaseModel):
    label_id: str
    labeler: str


def create_label_app(store: Store, engine, default_labeler: str | None = None):
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    queue = LabelQueue(store, engine)
    app = FastAPI(title="picochat labeling page")

    def fail(e: PicochatError, status: int = 400):
        return JSONResponse({"error": str(e)}, status_code=status)

    @app.get("/api/instructions")
    async def instructions():
        text = INSTRUCTIONS.read_text() if INSTRUCTIONS.exists() else "(docs/labeling.md is missing)"
        return {"markdown": text, "version": instructions_version(), "labels": LABELS,
                "labeler": default_labeler}

    @app.get("/api/next")
    async def next_pair(labeler: str = ""):
        if not labeler.strip():
            return fail(PicochatError("say who is labeling: ?labeler=NAME"))
        try:
            return await asyncio.to_thread(queue.next_pair, labeler.strip())
        except PicochatError as e:
            return fail(e, 500)

    @app.post("/api/label")
    async def label(body: LabelBody):
        try:
            made = store.add_label(body.pair, body.label, body.labeler, source=HUMAN,
                                   better=body.better.strip() if body.better and body.better.strip() else None)
        except PicochatError as e:
            return fail(e, 404 if "no pair" in str(e) else 400)
        return {"label_id": made.id, "progress": queue.progress(body.labeler.strip())}

    @app.post("/api/undo")
    async def undo(body: UndoBody):
        try:
            store.undo(body.label_id, body.labeler)
        except PicochatError as e:
            return fail(e, 404)
        return {"undone": body.label_id, "progress": queue.progress(body.labeler.strip())}

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "label.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve_label_page(run: RunDir, stage: str = "sft", host: str = "127.0.0.1", port: int = 8001,
                     labeler: str | None = None, dtype: str = "auto", device: str = "cpu") -> None:
    import uvicorn

    from picochat.engine import load_engine
    from picochat.tools import default_tools

    engine = load_engine(run.require_model(stage), dtype=dtype, tools=default_tools(), device=device)
    app = create_label_app(Store(run.prefs), engine, labeler)
    print(f"picochat label: comparing answers of {run.model(stage)}; labels go to {run.prefs / 'comparisons.jsonl'}\n"
          f"  labeling page  http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
