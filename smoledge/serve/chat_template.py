"""A model's Jinja2 chat template, rendered the way transformers' `apply_chat_template` renders it. Torch-free.

    from smoledge.serve.chat_template import ChatTemplate
    chat = ChatTemplate(settings.chat_template, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    prompt = chat.render([{"role": "user", "content": "Bonjour"}])   # ends with the generation prompt

The template comes from the bundle, so it runs in jinja2's immutable sandbox: it can build a string
and nothing else (no attribute access to Python internals, no mutation of the messages). The
environment matches transformers' (trim_blocks, lstrip_blocks, loop controls, `tojson` without ASCII
escaping, `raise_exception`, `strftime_now`, `{% generation %}` tags ignored), so a prompt rendered
here is byte for byte the prompt the model was trained and evaluated with. jinja2 comes with
llama-cpp-python and is listed in the `serve` extra for boards that run onnxruntime only.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The template refused the messages (its own raise_exception, or a rendering error)."""


class _GenerationTags(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; rendering keeps the text."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' filter: unlike jinja2's own, no HTML escaping and non-ASCII kept as is.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    def __init__(self, template: str, bos_token: str = "", eos_token: str = ""):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[_GenerationTags, jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self.template = env.from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"the chat template does not parse (line {exc.lineno}: {exc.message})") from None
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt for `messages` (OpenAI-style role/content dicts), ending with the assistant's turn opener."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except ChatTemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError) as exc:
            raise ChatTemplateError(str(exc)) from None
