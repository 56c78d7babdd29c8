"""The OpenAI-compatible API's shapes: request bodies, error bodies, documented answers. Torch-free.

    from smoledge.serve.protocol import CompletionRequest
    req = CompletionRequest.model_validate({"prompt": "The", "max_tokens": 8, "repeat_penalty": 1.1})
    sampling = req.sampling(req.max_tokens)

What a client may send and what it gets back when the request is wrong, apart from the routes that
serve it (server.py) and from generation itself (generation.py), as vLLM splits its protocol from its
API server: the schema here is also what GET /openapi.json publishes, so that clients and fuzzers know
the fields and the error codes of every route.

Field rules follow OpenAI's: a field this server does not know is a 400 that names it ("Unrecognized
request argument supplied"), a known one it does not apply (logit_bias, tools, chat logprobs) is a 400
that says so, and the sampling fields llama.cpp's server takes (top_k, min_p, repeat_penalty) sit next
to OpenAI's (presence_penalty, frequency_penalty). Bodies are strict: a "5" is not taken for 5.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from smoledge.serve.generation import OPTIONAL_SAMPLING, Sampling

# OpenAI's legacy completions default; chat completions default to "until the context is full".
DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_STOP_SEQUENCES = 4
# Most alternatives per token `logprobs` may ask for (OpenAI's legacy API allows 5; vLLM 20).
MAX_LOGPROBS = 20
# Most prompts in one /v1/completions request: they run one after another, so this bounds a request's time.
MAX_PROMPTS = 64


# -- errors in OpenAI's shape ---------------------------------------------------


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param
        self.headers = headers


def error_response(status: int, message: str, type_: str, param: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- documented answers (OpenAPI) -----------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, the body of every 4xx/5xx answer."""

    error: ErrorDetail


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route can answer, so that clients and fuzzers know them."""
    what = {
        400: "invalid request: a bad field, a prompt + max_tokens over the context, an unusable grammar",
        401: "missing or wrong API key (the server was started with --api-key)",
        404: "no such model",
        413: "request body over the server's limit",
        429: "every slot busy and the queue full; retry after Retry-After seconds",
        503: "model loading or failed, shutting down, or no slot came free in time; retry after Retry-After",
        504: "the request ran past the server's --request-timeout",
    }
    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return {c: {"model": ErrorBody, "description": what[c], **({"headers": retry} if c in (429, 503) else {})}
            for c in codes}


# Every route but the probes takes the API key and the body limit.
GUARDED = (401, 413)
GENERATION: dict[int | str, dict[str, Any]] = {
    200: {"description": "the completion (JSON), or with stream: true its chunks as server-sent events",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/event-stream": {}}},  # data: one JSON chunk per event, then [DONE]
    **answers(400, 404, 429, 503, 504, *GUARDED),
}


# -- request bodies ---------------------------------------------------------------


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    # llama.cpp server's shorthand: {"type": "json_object", "schema": {...}}.
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class _Base(BaseModel):
    # A field this server does not know is refused (400 naming it), as OpenAI refuses one: ignoring it
    # would answer a different request than the one sent (a repeat_penalty silently dropped).
    # Strict: a "5" or a 0 is not taken for 5 or false (the schema says integer, boolean).
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, json_schema_extra={"minimum": 1, "maximum": 1})  # checked by _n, clearer message
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    grammar: str | None = Field(None, min_length=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0, le=10.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    cache_prompt: bool = True
    # OpenAI's end-user id, for the operator's abuse tracking: it does not change the output.
    user: str | None = None
    logit_bias: dict[str, float] | None = Field(None, json_schema_extra={"maxProperties": 0})  # refused: sampling()

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    @field_validator("n")
    @classmethod
    def _n(cls, v: int | None) -> int | None:
        if v not in (None, 1):
            raise ValueError(f"only n=1 is supported, got {v}; send separate requests for more choices")
        return v

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema response_format asks for; None: free text (or a GBNF grammar)."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if self.grammar is not None:
            raise APIError(400, "grammar and response_format both constrain the output; send one of them",
                           param="grammar")
        if fmt.type == "json_object":
            return fmt.schema_ if fmt.schema_ is not None else {"type": "object"}
        schema = fmt.json_schema.schema_ if fmt.json_schema is not None else fmt.schema_
        if schema is None:
            raise APIError(400, 'response_format: type "json_schema" needs json_schema.schema, e.g. '
                           '{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}',
                           param="response_format")
        return schema

    def sampling(self, max_tokens: int | None) -> Sampling:
        if self.logit_bias:
            raise APIError(400, "logit_bias is not applied by this server; leave it out", param="logit_bias")
        optional = {name: getattr(self, name) for name in OPTIONAL_SAMPLING if getattr(self, name) is not None}
        return Sampling(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=list(self.stop or []),
            seed=self.seed,
            grammar=self.grammar,
            json_schema=self.json_schema(),
            cache_prompt=self.cache_prompt,
            **optional,
        )

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Base):
    # Text, token ids, or a batch of either (one choice per prompt, in order).
    prompt: str | list[str] | list[int] | list[list[int]]
    # 0 only with echo: score the prompt, generate nothing.
    max_tokens: int | None = Field(None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    suffix: str | None = Field(None, json_schema_extra={"maxLength": 0})  # no fill-in-the-middle: refused below

    def prompts(self) -> list[str | list[int]]:
        """The request's prompts; raises a 400 for what this server does not do."""
        if self.suffix:
            raise APIError(400, "suffix is not supported (it needs a fill-in-the-middle model)", param="suffix")
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            prompts: list[str | list[int]] = [self.prompt]  # type: ignore[list-item]
        else:
            prompts = list(self.prompt)  # type: ignore[arg-type]
        if not prompts:
            raise APIError(400, "prompt: the list of prompts is empty", param="prompt")
        if len(prompts) > MAX_PROMPTS:
            raise APIError(400, f"prompt: at most {MAX_PROMPTS} prompts per request, got {len(prompts)}; "
                           "split the batch", param="prompt")
        if self.stream:
            if self.echo or self.logprobs is not None:
                field = "echo" if self.echo else "logprobs"
                raise APIError(400, f"{field}: echo and logprobs come in non-streamed responses only; "
                               "set stream to false", param=field)
            if len(prompts) > 1:
                raise APIError(400, f"prompt: a streamed request takes one prompt, got a list of {len(prompts)}",
                               param="prompt")
        return prompts


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    """The participant's name; the chat template gets it (most ignore it)."""

    def plain(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        # "developer" is OpenAI's newer name for the system role.
        message = {"role": "system" if self.role == "developer" else self.role, "content": content}
        return message if self.name is None else {**message, "name": self.name}


class ChatRequest(_Base):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = Field(None, json_schema_extra={"maxItems": 0})  # refused by the route, clearer message
    logprobs: bool | None = Field(None, json_schema_extra={"enum": [False, None]})  # refused by unsupported()
    top_logprobs: int | None = Field(None, json_schema_extra={"maximum": 0})

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def unsupported(self) -> None:
        """A 400 for the chat fields this server knows but does not do."""
        if self.tools:
            raise APIError(400, "tools are not supported by this server", param="tools")
        if self.logprobs or self.top_logprobs:
            field = "logprobs" if self.logprobs else "top_logprobs"
            raise APIError(400, f"{field}: chat completions come without log-probabilities here; use "
                           "/v1/completions with logprobs (and the chat template applied to the prompt)", param=field)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    content: str
    add_special: bool = False
    """Add the BOS token the model's prompts start with (llama.cpp server's default: no)."""
    with_pieces: bool = False
    """Return [{"id": 42, "piece": "fox"}, ...] instead of bare ids."""


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tokens: list[int] = Field(json_schema_extra={"items": {"type": "integer", "minimum": 0}})



def usage(prompt: int, completion: int) -> dict[str, int]:
    """OpenAI's usage object. `completion` counts what generation.py's module docstring says: every
    sampled token, the end-of-turn token that stopped the generation included (as llama-server counts)."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def invalid_request(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 400 in OpenAI's shape for a body that fails validation, naming the field at fault (the first one)."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return error_response(400, f"the request body is not valid JSON ({detail})", "invalid_request_error")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "extra_forbidden":
        # OpenAI's wording for an argument it does not know, with the field as `param`.
        return error_response(400, f"Unrecognized request argument supplied: {where}; this server's fields are "
                              "listed in GET /openapi.json", "invalid_request_error", where)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    message = f"{where}: {msg}" if where else f"request body: {msg} (send a JSON object)"
    return error_response(400, message, "invalid_request_error", where or None)
