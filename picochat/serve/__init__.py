"""Serving: an OpenAI-compatible API and a web chat UI over a continuous-batching scheduler.

    picochat serve --run R [--stage sft] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                   [--max-concurrency N] [--max-queue N]

See docs/serve.md; `app.py` is the HTTP side, `scheduler.py` the batching, `static/` the UI.
"""
