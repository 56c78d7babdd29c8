"""Constrained output for the llama.cpp backend: a request's GBNF grammar or JSON schema, checked. Torch-free.

    from smoledge.serve.grammar import compile_grammar
    gbnf = compile_grammar(llama_cpp, vocab, Sampling(json_schema={"type": "object"}))

`Sampling.grammar` (GBNF text) or `Sampling.json_schema` (turned into GBNF by llama-cpp-python's
converter) is checked here, when the request is prepared: a grammar llama.cpp cannot parse is a
RequestError, i.e. a 400, before any slot is taken. The sampler then applies it at every token.

Limits on a request's grammar: llama.cpp parses GBNF recursively, and ~20k nested parentheses or a
chain of ~100k rules overflow the thread's stack and kill the process. llama-cpp-python's JSON-schema
converter writes `maxLength: N` (maxItems, a pattern's {m,n}...) as N nested optional groups, so a
schema's counts are capped first, then the grammar's size and nesting.
"""

from __future__ import annotations

import json
import re
from typing import Any

from smoledge.serve.generation import RequestError, Sampling, utf8

MAX_GRAMMAR_BYTES = 64 * 1024
MAX_GRAMMAR_DEPTH = 1000
MAX_SCHEMA_COUNT = 512
_SCHEMA_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def schema_problem(schema: Any, where: str = "schema") -> str | None:
    """Why a JSON schema would make too big a grammar (a count over MAX_SCHEMA_COUNT), or None."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _SCHEMA_COUNTS and isinstance(value, int) and value > MAX_SCHEMA_COUNT:
                return f"{where}.{key} is {value}"
            if key == "pattern" and isinstance(value, str):
                for m in _QUANTIFIER.finditer(value):
                    if max(int(x) for x in m.groups() if x) > MAX_SCHEMA_COUNT:
                        return f"{where}.pattern repeats {m.group(0)}"
            problem = schema_problem(value, f"{where}.{key}")
            if problem:
                return problem
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            problem = schema_problem(item, f"{where}[{i}]")
            if problem:
                return problem
    return None


def grammar_depth(text: str) -> int:
    """Deepest nesting of parentheses in GBNF text (string literals, character classes and comments skipped)."""
    depth = deepest = i = 0
    while i < len(text):
        c = text[i]
        if c in '"[':
            close = '"' if c == '"' else "]"
            i += 1
            while i < len(text) and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return deepest


def _schema_grammar(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    problem = schema_problem(schema)
    if problem:
        raise RequestError(f"response_format: {problem}; this server turns counts up to {MAX_SCHEMA_COUNT} "
                           "into a grammar (larger ones make a grammar too deep for llama.cpp); lower it "
                           "or leave it out", "response_format")
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    # The converter signals a schema it cannot express with assorted exceptions (AssertionError,
    # ValueError, KeyError, RecursionError...); all of them mean "this schema", never the server.
    except Exception as exc:
        raise RequestError(f"response_format: this JSON schema cannot be turned into a grammar "
                           f"({type(exc).__name__}: {exc}); simplify it (no remote $ref, patterns "
                           "anchored with ^...$)", "response_format") from None


def compile_grammar(lib: Any, vocab: Any, sampling: Sampling) -> str | None:
    """The GBNF text for the request's constraint, checked by llama.cpp's own parser (`lib` is the
    llama_cpp module, `vocab` the model's llama_vocab); None: no constraint."""
    if sampling.json_schema is not None:
        text, where = _schema_grammar(sampling.json_schema), "response_format"
    elif sampling.grammar is not None:
        text, where = sampling.grammar, "grammar"
    else:
        return None
    data = utf8(text, where, where)
    if len(data) > MAX_GRAMMAR_BYTES:
        raise RequestError(f"{where}: the grammar is {len(data)} bytes, over this server's limit of "
                           f"{MAX_GRAMMAR_BYTES}; simplify it", where)
    depth = grammar_depth(text)
    if depth > MAX_GRAMMAR_DEPTH:
        raise RequestError(f"{where}: the grammar nests parentheses {depth} deep, over this server's limit of "
                           f"{MAX_GRAMMAR_DEPTH} (llama.cpp parses them recursively); flatten it into rules", where)
    # llama.cpp parses the grammar when the sampler is made: a NULL sampler is a grammar it rejects
    # (syntax, undefined rule, no `root`, left recursion, repetitions past its limits).
    sampler = lib.llama_sampler_init_grammar(vocab, data, b"root")
    if not sampler:
        raise RequestError(f"{where}: llama.cpp cannot use this GBNF grammar (undefined rule, no `root` rule, "
                           "left recursion, a syntax error or too many repetitions); see "
                           "https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md", where)
    lib.llama_sampler_free(sampler)
    return text
