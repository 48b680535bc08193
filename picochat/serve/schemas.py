"""OpenAI request and response shapes (the subset picochat serves), as pydantic models.

Requests check the types and ranges of the fields picochat serves, so a wrong type is a 422 with
a message naming the field, never a server error; a top-level field it does not serve is kept
(`model_extra`) and answered with a 400 naming it, never silently dropped. Nested objects
(messages, tools) ignore fields they do not use.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_STRING = 1_000_000          # characters in one message / prompt (the body limit comes first)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_In):
    type: Literal["text"] = "text"
    text: str = Field(max_length=MAX_STRING)


class FunctionCall(_In):
    name: str = Field(min_length=1, max_length=256)
    arguments: Union[str, dict[str, Any]] = "{}"     # OpenAI sends a JSON string


class ToolCallIn(_In):
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_In):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = Field(default=None)
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallIn]] = Field(default=None, max_length=64)
    tool_call_id: Optional[str] = None
    reasoning_content: Optional[str] = Field(default=None, max_length=MAX_STRING)

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class FunctionDef(_In):
    name: str = Field(min_length=1, max_length=64)
    description: Optional[str] = Field(default=None, max_length=10_000)
    parameters: Optional[dict[str, Any]] = None


class ToolDef(_In):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_In):
    name: str = Field(min_length=1, max_length=64)


class ToolChoiceNamed(_In):
    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(_In):
    include_usage: bool = False


class JsonSchemaFormat(_In):
    name: str = Field(default="answer", max_length=64)
    description: Optional[str] = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(_In):
    """Structured outputs: "text" (free), "json_object" (any JSON object), "json_schema" (JSON
    valid for the schema), enforced by grammar-constrained decoding."""
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: Optional[JsonSchemaFormat] = None


class _Request(BaseModel):
    """A request's top level: fields picochat does not know are kept (not dropped), so the
    handler can answer 400 naming them."""
    model_config = ConfigDict(extra="allow")


class _Sampling(_Request):
    model: Optional[str] = Field(default=None, max_length=256)
    temperature: Optional[float] = Field(default=None, ge=0, le=2, description="below 1e-3: greedy")
    top_p: Optional[float] = Field(default=None, gt=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0, le=100_000, description="picochat extension")
    min_p: Optional[float] = Field(default=None, ge=0, lt=1, description="picochat extension")
    repetition_penalty: Optional[float] = Field(default=None, ge=0.01, le=100, description="picochat extension")
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    n: int = Field(default=1, ge=1, le=8)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(default=None, ge=0, le=2**63 - 1)
    user: Optional[str] = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    tools: Optional[list[ToolDef]] = Field(default=None, max_length=128)
    tool_choice: Union[Literal["none", "auto", "required"], ToolChoiceNamed, None] = None
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = None


# The four forms OpenAI takes for a completion prompt or an embedding input: a text, texts, token
# ids, or lists of token ids (what evaluation harnesses send). Token ranges are the model's, so the
# handler checks them.
def _is_id(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _one_of_the_forms(value):
    """One plain message for a value of none of the forms (the union alone lists each form's complaint)."""
    if isinstance(value, str) or isinstance(value, list) and (
            all(isinstance(x, str) for x in value) or all(_is_id(x) for x in value)
            or all(isinstance(x, list) and all(_is_id(t) for t in x) for x in value)):
        return value
    raise ValueError("must be a text, a list of texts, a list of token ids, or a list of token-id lists")


Text = Annotated[str, Field(max_length=MAX_STRING)]
Inputs = Annotated[Union[Text, list[Text], list[int], list[list[int]]], BeforeValidator(_one_of_the_forms)]
MAX_INPUTS = 2048       # texts or token lists in one request (OpenAI's limit for embeddings)


class CompletionRequest(_Sampling):
    prompt: Inputs = Field(description="a text, texts, token ids, or lists of token ids; each prompt "
                                       "gets n choices, indexed prompt-major")
    max_tokens: Optional[int] = Field(default=16, ge=0,
                                      description="0: nothing new (with echo and logprobs: the prompt's scores)")
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: Optional[str] = None
    response_format: Optional[ResponseFormat] = None


class EmbeddingRequest(_In):
    input: Inputs = Field(description="a text, texts, token ids, or lists of token ids; one vector each")
    model: Optional[str] = Field(default=None, max_length=256)
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: the little-endian float32 bytes of each vector")
    dimensions: Optional[int] = Field(default=None, ge=1, description="only the model's own size is served")
    user: Optional[str] = None


# --- responses (for the schema; the handlers build plain dicts) -----------------------------------
class FeedbackRequest(_In):
    """POST /v1/feedback: a thumbs up or down on one answer (answer + rating), or which of two
    answers to the same conversation was better (answers + preferred: "a" is answers[0])."""
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    answer: Optional[str] = Field(default=None, max_length=MAX_STRING)
    rating: Optional[Literal["up", "down"]] = None
    answers: Optional[list[Annotated[str, Field(max_length=MAX_STRING)]]] = Field(default=None, min_length=2,
                                                                                   max_length=2)
    preferred: Optional[Literal["a", "b", "tie", "both_bad"]] = None
    user: Optional[str] = Field(default=None, max_length=256)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    tool_calls: Optional[list[ToolCallOut]] = None
    picochat_tools: Optional[list[dict[str, Any]]] = Field(
        default=None, description="built-in tool calls run server-side: name, arguments, result")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Optional[str] = None
    logprobs: Optional[dict[str, Any]] = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Optional[str] = None
    logprobs: Optional[dict[str, Any]] = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "picochat"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
