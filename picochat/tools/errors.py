"""The exception a tool raises to tell the model what went wrong, in words meant for it.

Its own module, so tools (picochat.tools.calculator, ...) can subclass it without importing
the registry in picochat/tools/__init__.py, which imports them.
"""


class ToolError(Exception):
    """A tool's expected failure: the registry shows the model its message as is, without the
    exception's type name that an unexpected failure gets."""
