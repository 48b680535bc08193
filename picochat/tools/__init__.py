"""Tools the assistant can call, and the registry that runs them.

A tool call, as the chat template renders it, is JSON between `<|tool_call|>` and
`<|/tool_call|>`: {"name": "calculator", "arguments": {"expression": "12*34"}}. The registry
parses it, runs the tool with a time limit and returns the result text; every failure
(malformed JSON, unknown tool, bad arguments, an exception, a timeout) becomes an
"error: ..." result for the model to read, never an exception in the engine. A tool raises
ToolError (picochat.tools.errors) for failures it expects; the model reads its message as is.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Callable

from picochat.tools import calculator
from picochat.tools.errors import ToolError

MAX_RESULT_CHARS = 2000


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict                    # JSON schema of the arguments object
    fn: Callable[..., str]              # called with the arguments as keywords
    timeout: float = 5.0                # seconds

    def schema(self) -> dict:
        """OpenAI-style function description."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass
class ToolCall:
    """One parsed call and what it returned."""
    text: str                           # the raw text between the markers
    name: str | None = None
    arguments: dict | None = None
    result: str = ""
    ok: bool = False

    def message_call(self) -> dict:
        """The call as a chat message's `tool_calls` entry (what the template renders)."""
        return {"type": "function", "function": {"name": self.name or "",
                                                 "arguments": self.arguments or {}}}


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> "ToolRegistry":
        self.tools[tool.name] = tool
        return self

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def parse(self, text: str) -> ToolCall:
        """Parse a call's JSON; on failure the returned call carries the error as its result."""
        call = ToolCall(text=text)
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            call.result = f"error: the tool call is not valid JSON ({e.msg if hasattr(e, 'msg') else e})"
            return call
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            call.result = 'error: a tool call must be {"name": ..., "arguments": {...}}'
            return call
        call.name = obj["name"]
        args = obj.get("arguments", {})
        if isinstance(args, str):   # some models emit the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        if not isinstance(args, dict):
            call.result = "error: the arguments must be a JSON object"
            return call
        call.arguments = args
        return call

    def run(self, text: str) -> ToolCall:
        """Parse and execute a call; never raises."""
        call = self.parse(text)
        if call.arguments is None:
            return call
        tool = self.tools.get(call.name)
        if tool is None:
            call.result = f"error: unknown tool {call.name!r:.60}; available: {', '.join(self.tools) or 'none'}"
            return call
        call.result, call.ok = run_with_timeout(tool, call.arguments)
        if len(call.result) > MAX_RESULT_CHARS:
            call.result = call.result[:MAX_RESULT_CHARS] + " …(truncated)"
        return call


def run_with_timeout(tool: Tool, arguments: dict) -> tuple[str, bool]:
    """Run a tool in a daemon thread; give up after its timeout. (A hung thread cannot be
    killed in Python; it is abandoned, and being a daemon it does not keep the process alive.)"""
    box: dict = {}

    def target():
        try:
            box["result"] = str(tool.fn(**arguments))
        except TypeError as e:
            box["error"] = f"bad arguments for {tool.name}: {str(e).split('() ', 1)[-1]}"
        except Exception as e:  # noqa: BLE001 - any tool failure becomes a message for the model
            box["error"] = str(e) if isinstance(e, ToolError) else f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=target, name=f"tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(tool.timeout)
    if thread.is_alive():
        return f"error: {tool.name} timed out after {tool.timeout:g} s", False
    if "error" in box:
        return f"error: {box['error']}", False
    return box.get("result", ""), True


def calculator_tool() -> Tool:
    return Tool("calculator", calculator.DESCRIPTION, calculator.PARAMETERS, calculator.calculate,
                timeout=2.0)


def default_tools() -> ToolRegistry:
    return ToolRegistry().register(calculator_tool())
