"""Multiple-choice tasks scored by log-likelihood, the way lm-evaluation-harness scores them.

A task is a local JSONL file, one item per line, in one of these formats (detected
from the first row, or named explicitly):

    hellaswag       {"ctx": str | "ctx_a"+"ctx_b", "endings": [str, ...], "label": int | "int",
                     "activity_label": str (optional)}
    belebele        {"flores_passage", "question", "mc_answer1".."mc_answer4",
                     "correct_answer_num": 1..4 (int or str)}    lm-eval's prompt, letters as choices
    belebele_cloze  the same rows; the answers' text as choices (only by name: never detected)
    generic         {"context" | "query": str, "choices": [str, ...], "gold": int}

Every row may carry "lang" (belebele rows: "dialect" too). Each choice is scored by the
summed log-likelihood of " " + choice given the context; the highest wins (acc), or the
highest per character (acc_norm) or per UTF-8 byte (acc_bytes), as lm-eval reports them.

    from smoledge.evaluate.tasks import load_task, run_task
    from smoledge.evaluate.perplexity import TorchScorer
    items = load_task("hellaswag_val.jsonl", limit=200)
    result = run_task(TorchScorer("runs/q/export/hf"), tok, items, seq_len=256)
    print(result.to_dict())   # {"acc": ..., "acc_norm": ..., "n": 200, "languages": {...}}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import read_jsonl

if TYPE_CHECKING:
    from smoledge.evaluate.perplexity import Scorer

Format = Literal["auto", "hellaswag", "belebele", "belebele_cloze", "generic"]
FORMATS = ("hellaswag", "belebele", "belebele_cloze", "generic")
# lm-eval's default target_delimiter: every continuation is " " + choice.
DELIMITER = " "
BELEBELE_ANSWERS = ("mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4")
# What each format needs, for the error that says why a row is not that format.
REQUIRED = {
    "hellaswag": "'ctx' (or 'ctx_a' and 'ctx_b'), 'endings', 'label'",
    "belebele": "'flores_passage', 'question', 'mc_answer1'..'mc_answer4', 'correct_answer_num'",
    "generic": "'context' (or 'query'), 'choices', 'gold'",
}


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    """The answers, without the leading delimiter (lm-eval's doc_to_choice)."""
    gold: int
    lang: str | None
    where: str
    """'file:line' of the row, for errors found while scoring."""


# ----------------------------------------------------------------------------- loading

def load_task(path: str | Path, format: Format = "auto", limit: int | None = None,
              lang: str | None = None) -> list[Item]:
    """The first `limit` items of a JSONL task file, each row checked against the file's format."""
    path = Path(path)
    if not path.is_file():
        raise SmoledgeError(f"task file {path} does not exist; fix evaluate.tasks[].path")
    if format != "auto" and format not in FORMATS:
        raise SmoledgeError(f"{path}: unknown task format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    items: list[Item] = []
    for where, row in read_jsonl(path):
        if limit is not None and len(items) >= limit:
            break
        if format == "auto":
            format = detect_format(row, where)
        items.append(parse_row(row, format, where, lang))
    if not items:
        raise SmoledgeError(f"{path} holds no items; a task file needs one JSON object per line")
    return items


def detect_format(row: dict[str, Any], where: str) -> str:
    """The format a row's keys say it is; a file is read in the format of its first row."""
    if "endings" in row:
        return "hellaswag"
    if "flores_passage" in row:
        return "belebele"
    if "choices" in row:
        return "generic"
    raise SmoledgeError(f"{where}: cannot tell the task format from keys {sorted(row)}; a row needs "
                        + "; or ".join(f"{k}: {v}" for k, v in REQUIRED.items())
                        + ". Set the task's format to say which")


def parse_row(row: dict[str, Any], format: str, where: str, default_lang: str | None) -> Item:
    lang = _opt_str(row, "lang", where) or default_lang
    if format == "hellaswag":
        context, choices, gold = _hellaswag(row, where)
    elif format in ("belebele", "belebele_cloze"):
        context, choices, gold = _belebele(row, where, cloze=format == "belebele_cloze")
        lang = _opt_str(row, "lang", where) or _opt_str(row, "dialect", where) or default_lang
    elif format == "generic":
        context, choices, gold = _generic(row, where)
    else:
        raise SmoledgeError(f"{where}: unknown task format {format!r}; choose one of {', '.join(FORMATS)}")
    if len(choices) < 2:
        raise SmoledgeError(f"{where}: {len(choices)} choice(s); a multiple-choice item needs at least 2")
    for i, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise SmoledgeError(f"{where}: choice {i} is {c!r}; every choice must be a non-empty string")
    if not 0 <= gold < len(choices):
        raise SmoledgeError(f"{where}: gold answer {gold} is out of range for {len(choices)} choices "
                            f"(0..{len(choices) - 1})")
    return Item(context, tuple(choices), gold, lang, where)


def _hellaswag(row: dict[str, Any], where: str) -> tuple[str, list[str], int]:
    # lm-eval's hellaswag: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
    # choices = preprocess(ending) (lm_eval/tasks/hellaswag/utils.py).
    if "ctx_a" in row and "ctx_b" in row:
        ctx = _str(row, "ctx_a", where) + " " + _str(row, "ctx_b", where).capitalize()
    elif "ctx" in row:
        ctx = _str(row, "ctx", where)
    else:
        raise SmoledgeError(f"{where}: missing key 'ctx' (or 'ctx_a' and 'ctx_b'); a hellaswag row needs "
                            + REQUIRED["hellaswag"])
    label = _opt_str(row, "activity_label", where)
    context = _hellaswag_clean(f"{label}: {ctx}" if label else ctx)
    endings = _list(row, "endings", where, "hellaswag")
    return context, [_hellaswag_clean(e) if isinstance(e, str) else e for e in endings], \
        _index(row, "label", where, "hellaswag")


def _hellaswag_clean(text: str) -> str:
    # The brackets are WikiHow markup left in HellaSwag; lm-eval strips them the same way.
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _belebele(row: dict[str, Any], where: str, cloze: bool) -> tuple[str, list[str], int]:
    passage = _str(row, "flores_passage", where, "belebele")
    question = _str(row, "question", where, "belebele").strip()
    answers = [_str(row, k, where, "belebele") for k in BELEBELE_ANSWERS]
    raw = row.get("correct_answer_num")
    if raw is None:
        raise SmoledgeError(f"{where}: missing key 'correct_answer_num'; a belebele row needs " + REQUIRED["belebele"])
    try:
        num = int(raw)
        if isinstance(raw, bool) or (isinstance(raw, float) and raw != num):
            raise ValueError
    except (TypeError, ValueError):
        raise SmoledgeError(f"{where}: correct_answer_num is {raw!r}; expected 1, 2, 3 or 4") from None
    if not 1 <= num <= 4:
        raise SmoledgeError(f"{where}: correct_answer_num {num} is out of range (1..4, 1-based)")
    if cloze:
        # The cloze formulation small models are measured with (the answer's text is the continuation,
        # as in lighteval's "CF" tasks): a model too small to map answers to letters still ranks texts.
        return f"P: {passage}\nQ: {question}\nA:", answers, num - 1
    # lm-eval's belebele template verbatim (lm_eval/tasks/belebele/_default_template_yaml), fullwidth
    # colon after "Answer" included, so the numbers compare with published lm-eval belebele scores.
    context = (f"P: {passage}\nQ: {question}\nA: {answers[0]}\nB: {answers[1]}\nC: {answers[2]}\n"
               f"D: {answers[3]}\nAnswer\uff1a")
    return context, ["A", "B", "C", "D"], num - 1


def _generic(row: dict[str, Any], where: str) -> tuple[str, list[str], int]:
    key = "context" if "context" in row else "query" if "query" in row else None
    if key is None:
        raise SmoledgeError(f"{where}: missing key 'context' (or 'query'); a generic row needs " + REQUIRED["generic"])
    return _str(row, key, where), _list(row, "choices", where, "generic"), _index(row, "gold", where, "generic")


def _str(row: dict[str, Any], key: str, where: str, fmt: str | None = None) -> str:
    if key not in row:
        need = f"; a {fmt} row needs " + REQUIRED[fmt] if fmt else ""
        raise SmoledgeError(f"{where}: missing key '{key}'{need}")
    if not isinstance(row[key], str):
        raise SmoledgeError(f"{where}: '{key}' must be a string, got {row[key]!r}")
    return row[key]


def _opt_str(row: dict[str, Any], key: str, where: str) -> str | None:
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise SmoledgeError(f"{where}: '{key}' must be a string, got {value!r}")
    return value or None


def _list(row: dict[str, Any], key: str, where: str, fmt: str) -> list[Any]:
    if key not in row:
        raise SmoledgeError(f"{where}: missing key '{key}'; a {fmt} row needs " + REQUIRED[fmt])
    if not isinstance(row[key], list):
        raise SmoledgeError(f"{where}: '{key}' must be a list of strings, got {row[key]!r}")
    return row[key]


def _index(row: dict[str, Any], key: str, where: str, fmt: str) -> int:
    """A 0-based answer index; HF's hellaswag stores it as a string ("2")."""
    if key not in row:
        raise SmoledgeError(f"{where}: missing key '{key}'; a {fmt} row needs " + REQUIRED[fmt])
    value = row[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise SmoledgeError(f"{where}: '{key}' is {value!r}; expected the 0-based index of the right answer "
                        "(unlabelled rows, e.g. a test split, cannot be scored)")


# ----------------------------------------------------------------------------- scoring

def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids as lm-eval's HFLM._encode_pair makes them.

    Trailing whitespace of the context moves to the continuation; context + continuation is
    tokenized as one string and split after the context's own ids, so the continuation's first
    token is the one the model would meet in running text (" Paris", not " " + "Paris"). Where the
    context's ids are not a prefix of the whole string's ids (a merge across the boundary; rare
    with byte-level BPE, whose pre-tokenizer splits before the space) lm-eval would score a
    sequence no text tokenizes to; we tokenize the continuation alone instead. An empty context
    becomes EOS, as lm-eval's prefix token.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if not context:
        return [tok.eos_token_id], tok.encode(continuation, add_special_tokens=False)
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    if whole[:len(ctx)] != ctx or len(whole) == len(ctx):
        return ctx, tok.encode(continuation, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def continuation_loglikelihood(scorer: "Scorer", ctx: Sequence[int], cont: Sequence[int], seq_len: int,
                               where: str = "") -> float:
    """log P(cont | ctx) in nats: one window of at most seq_len ids, the continuation kept whole
    and the context cut from the left (as lm-eval truncates to the model's max length)."""
    if len(cont) > seq_len - 1:
        raise SmoledgeError(f"{where + ': ' if where else ''}a choice is {len(cont)} tokens, more than "
                            f"seq_len - 1 = {seq_len - 1} leaves room for; raise evaluate.seq_len or shorten it")
    window = (list(ctx) + list(cont))[-seq_len:]
    nll = scorer.window_nll(window)  # (len(window) - 1,) NLL of window[1:]
    return -float(np.sum(nll[-len(cont):], dtype=np.float64))


def choice_loglikelihoods(scorer: "Scorer", tok, item: Item, seq_len: int) -> np.ndarray:
    """(n_choices,) log-likelihood of each " " + choice given the item's context."""
    out = np.empty(len(item.choices), dtype=np.float64)  # (C,)
    for i, choice in enumerate(item.choices):
        ctx, cont = encode_pair(tok, item.context, DELIMITER + choice)
        out[i] = continuation_loglikelihood(scorer, ctx, cont, seq_len, item.where)
    return out


@dataclass
class TaskResult:
    n: int
    acc: float
    acc_stderr: float
    acc_norm: float
    """Argmax of log-likelihood / characters of the choice (lm-eval's acc_norm)."""
    acc_norm_stderr: float
    acc_bytes: float
    """Argmax of log-likelihood / UTF-8 bytes of the choice (lm-eval's acc_bytes): fairer than
    characters across scripts whose characters take different numbers of bytes."""
    acc_bytes_stderr: float
    chance: float
    """Expected accuracy of a uniform guess (mean of 1 / number of choices)."""
    languages: dict[str, "TaskResult"] = field(default_factory=dict)
    loglikelihoods: list[list[float]] = field(default_factory=list, repr=False)
    """Per item, each choice's log-likelihood (not in to_dict: the report carries the means)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in
                               ("n", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "acc_bytes",
                                "acc_bytes_stderr", "chance")}
        if self.languages:
            out["languages"] = {lang: r.to_dict() for lang, r in self.languages.items()}
        return out


def mean_stderr(x: np.ndarray) -> float:
    """Standard error of a mean, as lm-eval's mean_stderr: sample std (ddof=1) / sqrt(n)."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def aggregate(items: Sequence[Item], lls: Sequence[np.ndarray], by_language: bool = True) -> TaskResult:
    """acc / acc_norm / acc_bytes with their stderr, overall and per language."""
    if not items:
        raise ValueError("no items to aggregate")
    gold = np.array([it.gold for it in items])
    # np.argmax keeps the first of tied choices, as lm-eval does.
    pred = np.array([np.argmax(ll) for ll in lls])
    pred_norm = np.array([np.argmax(ll / np.array([len(c) for c in it.choices])) for it, ll in zip(items, lls)])
    pred_bytes = np.array([np.argmax(ll / np.array([len(c.encode("utf-8")) for c in it.choices]))
                           for it, ll in zip(items, lls)])
    acc, acc_norm, acc_bytes = (pred == gold).astype(float), (pred_norm == gold).astype(float), \
        (pred_bytes == gold).astype(float)
    result = TaskResult(
        n=len(items), acc=float(acc.mean()), acc_stderr=mean_stderr(acc),
        acc_norm=float(acc_norm.mean()), acc_norm_stderr=mean_stderr(acc_norm),
        acc_bytes=float(acc_bytes.mean()), acc_bytes_stderr=mean_stderr(acc_bytes),
        chance=float(np.mean([1 / len(it.choices) for it in items])),
        loglikelihoods=[[float(v) for v in ll] for ll in lls])
    if by_language:
        for lang in sorted({it.lang for it in items if it.lang is not None}):
            keep = [i for i, it in enumerate(items) if it.lang == lang]
            result.languages[lang] = aggregate([items[i] for i in keep], [lls[i] for i in keep], by_language=False)
    return result


def run_task(scorer: "Scorer", tok, items: Sequence[Item], seq_len: int,
             on_item: Callable[[int, int], None] | None = None) -> TaskResult:
    """Score every item's choices with `scorer` (ids from `tok`, the HF tokenizer) and aggregate."""
    lls = []
    for i, item in enumerate(items):
        lls.append(choice_loglikelihoods(scorer, tok, item, seq_len))
        if on_item is not None:
            on_item(i + 1, len(items))
    return aggregate(items, lls)
