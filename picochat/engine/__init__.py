"""Generation: prefill the prompt into a KV cache, then decode one token at a time.

The package, in dependency order (each usable on its own):

- `sampling`: `SamplingParams`, `Token`, `Sampler` and the batched samplers.
- `fast`: `FastLlama`, a decode-oriented copy of a `Llama`'s weights.
- `generation`: `generate_steps` / `generate`, batched token generation without a protocol.
- `text`: `TextStream` (whole UTF-8 characters) and `StopStrings`.
- `turn`: `Turn`, the model-free state of one assistant answer (text / thinking / tool calls /
  stops / injected ids / the sampled mask), and its `Event`s.
- `conversation`: `Engine` (render, fit, chat, stream, generate_batch) and `load_engine`.
"""

from picochat.engine.conversation import Completion, Engine, load_engine
from picochat.engine.fast import FastLlama, as_fast
from picochat.engine.generation import generate, generate_steps
from picochat.engine.sampling import (
           Sampler,
           SamplingParams,
           Token,
           draw,
           sample_filtered,
)
from picochat.engine.text import StopStrings, TextStream
from picochat.engine.turn import MAX_TOOL_CALLS, Event, Step, Turn

__all__ = [
           "MAX_TOOL_CALLS",
           "Completion",
           "Engine",
           "Event",
           "FastLlama",
           "Sampler",
           "SamplingParams",
           "Step",
           "StopStrings",
           "TextStream",
           "Token",
           "Turn",
           "as_fast",
           "draw",
           "generate",
           "generate_steps",
           "load_engine",
           "sample_filtered",
]
