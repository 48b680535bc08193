"""`picochat chat`: talk to a chat model in the terminal.

    picochat chat --run R [--stage sft] [--system TEXT] [--temperature T] [--dtype auto] [--device auto]

Answers stream as they are generated; tool calls are shown as they happen. Input: one line is a
message; end a line with a backslash to continue on the next, or wrap several lines between
lines holding only three double quotes. Ctrl-C stops an answer (what was said so far is kept)
without leaving the chat; Ctrl-D or /quit leaves. Commands: see HELP.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from picochat.rundir import PicochatError, RunDir

HELP = """commands:
  /help              this list
  /reset             forget the conversation (keeps the system prompt)
  /system [TEXT]     set the system prompt (no TEXT: show it; /system - : remove it)
  /temp [T]          set the sampling temperature (no T: show it)
  /save FILE         write the conversation as JSON
  /load FILE         read a conversation written by /save
  /quit              leave (also Ctrl-D)
input: end a line with \\ to continue it; or put lines between two lines of \"\"\"
Ctrl-C stops an answer without leaving the chat."""

MAX_MESSAGE_CHARS = 2_000_000


class ChatSession:
    """The conversation and the settings; commands and messages in, text out (to `out`)."""

    def __init__(self, engine, system: str | None, params, out=sys.stdout):
        self.engine, self.system, self.params, self.out = engine, system, params, out
        self.messages: list[dict] = []

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def conversation(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.messages

    # -- commands -------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.write(HELP + "\n")
        elif name == "/reset":
            self.messages = []
            self.write("[conversation cleared]\n")
        elif name == "/system":
            if not arg:
                self.write(f"[system prompt: {self.system!r}]\n" if self.system else "[no system prompt]\n")
            else:
                self.system = None if arg == "-" else arg
                self.write("[system prompt removed]\n" if self.system is None else "[system prompt set]\n")
        elif name == "/temp":
            self.set_temperature(arg)
        elif name == "/save":
            self.save(arg)
        elif name == "/load":
            self.load(arg)
        else:
            self.write(f"[unknown command {name!r}; /help lists the commands]\n")
        return True

    def set_temperature(self, arg: str) -> None:
        from picochat.engine import SamplingParams

        if not arg:
            self.write(f"[temperature {self.params.temperature:g}]\n")
            return
        try:
            t = float(arg)
            self.params = SamplingParams(**{**self.params.__dict__, "temperature": t})
        except (ValueError, PicochatError):
            self.write(f"[not a temperature: {arg!r:.40}; give a number >= 0, e.g. /temp 0.7]\n")
            return
        self.write(f"[temperature {t:g}]\n")

    def save(self, arg: str) -> None:
        if not arg:
            self.write("[usage: /save FILE]\n")
            return
        from picochat.rundir import atomic_write_json

        try:
            atomic_write_json(Path(arg).expanduser(), {"system": self.system, "messages": self.messages})
        except OSError as e:
            self.write(f"[could not save to {arg}: {e.strerror or e}]\n")
            return
        self.write(f"[saved {len(self.messages)} messages to {arg}]\n")

    def load(self, arg: str) -> None:
        if not arg:
            self.write("[usage: /load FILE]\n")
            return
        from picochat.chat import ROLES

        try:
            data = json.loads(Path(arg).expanduser().read_text(encoding="utf-8"))
            messages = data["messages"]
            if not all(isinstance(m, dict) and m.get("role") in ROLES for m in messages):
                raise ValueError(f"every message needs a role among {', '.join(ROLES)}")
            system = data.get("system")
            self.engine.render(([{"role": "system", "content": system}] if system else []) + messages)
        except (OSError, ValueError, KeyError, TypeError, PicochatError) as e:
            self.write(f"[could not load {arg}: {getattr(e, 'strerror', None) or e}; "
                       "expected a file written by /save]\n")
            return
        self.system, self.messages = system, messages
        self.write(f"[loaded {len(messages)} messages from {arg}]\n")

    # -- messages -------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Send a user message and stream the answer. Ctrl-C stops the answer."""
        from picochat.engine import SamplingParams

        if not text.strip():
            self.write("[empty message: type something, or /help]\n")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            self.write(f"[message of {len(text):,} characters cut to {MAX_MESSAGE_CHARS:,}]\n")
            text = text[:MAX_MESSAGE_CHARS]
        self.messages.append({"role": "user", "content": text})
        params = self.params
        if params.seed is not None:   # reproducible, but not the same draw for every message
            params = SamplingParams(**{**params.__dict__, "seed": params.seed + len(self.messages)})
        events = self.engine.chat(self.conversation(), params)
        answer: list[dict] = [{"role": "assistant", "content": ""}]
        started = False
        try:
            for event in events:
                if event.kind == "notice":
                    self.write(f"{chr(10) if started else ''}[note: {event.text}]\n")
                    continue
                if not started:
                    self.write("assistant: ")
                    started = True
                if event.kind == "text":
                    answer[-1]["content"] += event.text
                    self.write(event.text)
                elif event.kind == "thinking":
                    self.write(f"\x1b[2m{event.text}\x1b[0m" if self.out.isatty() else event.text)
                elif event.kind == "tool_call":
                    call = event.call
                    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None \
                        else call.text[:200]
                    self.write(f"\n[tool {call.name or '?'} {args} -> {call.result}]\n")
                elif event.kind == "done":
                    answer = event.messages or answer
                    if event.finish_reason == "length":
                        self.write(" [... length limit]")
        except KeyboardInterrupt:
            events.close()
            self.write(" [stopped]" if started else "[stopped]")
        finally:
            self.write("\n")
        self.messages += [m for m in answer if m.get("content") or m.get("tool_calls") or m["role"] == "tool"]


def clean_input(text: str) -> tuple[str, bool]:
    """Terminal input read with surrogateescape: invalid UTF-8 bytes -> U+FFFD. Returns the
    text and whether anything was replaced."""
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed, fixed != text or "\ufffd" in text


def read_message(prompt: str, read=input) -> str | None:
    """One message: a line, or lines joined by a trailing backslash, or a triple-quoted block.
    None at end of input."""
    try:
        line = read(prompt)
    except EOFError:
        return None
    if line.strip() == '"""':
        lines = []
        while True:
            try:
                more = read("... ")
            except EOFError:
                break
            if more.strip() == '"""':
                break
            lines.append(more)
        return "\n".join(lines)
    lines = [line]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        try:
            lines.append(read("... "))
        except EOFError:
            break
    return "\n".join(lines)


def chat(run: RunDir, stage: str = "sft", system: str | None = None, dtype: str = "auto", device: str = "cpu",
         **sampling) -> None:
    """Talk to the stage's model on stdin/stdout; `sampling`: SamplingParams fields."""
    from picochat.engine import SamplingParams, load_engine
    from picochat.tools import default_tools

    params = SamplingParams(**sampling)
    folder = run.require_model(stage)
    engine = load_engine(folder, dtype=dtype, tools=default_tools(), device=device)
    session = ChatSession(engine, system, params)
    try:
        sys.stdin.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError):
        pass
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    print(f"picochat chat: {folder} ({engine.context}-token context, tools: "
          f"{', '.join(engine.tools.tools)}). /help for commands, Ctrl-D to leave.")
    while True:
        try:
            text = read_message("you: " if interactive else "")
        except KeyboardInterrupt:
            print("\n[Ctrl-C: input discarded; Ctrl-D or /quit leaves]")
            continue
        if text is None:
            print()
            return
        text, replaced = clean_input(text)
        if replaced:
            session.write("[your input was not valid UTF-8; undecodable bytes were replaced with \ufffd]\n")
        if not interactive:
            session.write(f"you: {text[:200]}{'…' if len(text) > 200 else ''}\n")
        if text.startswith("/") and not text.startswith("//"):
            if not session.command(text):
                return
            continue
        session.send(text[1:] if text.startswith("//") else text)
