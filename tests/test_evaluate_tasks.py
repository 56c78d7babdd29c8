"""Multiple-choice task evals and user eval sets, on real prose with real tiny models.

The task files are written here from the Gutenberg "Alice" translations in shared/data/prose:
a next-sentence cloze (the sentence that follows in the same paragraph vs sentences from
other paragraphs), in each of the formats tasks.py reads.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from smoledge.errors import SmoledgeError
from smoledge.evaluate.evalsets import load_eval_set, pack_documents, read_documents
from smoledge.evaluate.perplexity import TorchScorer, score, token_byte_lengths
from smoledge.evaluate.tasks import (
    Item,
    aggregate,
    choice_loglikelihoods,
    continuation_loglikelihood,
    encode_pair,
    load_task,
    mean_stderr,
    run_task,
)

LANGS = ("de", "en", "fr", "it")
ITEMS_PER_LANG = 12


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _paragraphs(path: Path) -> list[str]:
    """The book's paragraphs (Gutenberg header and licence cut), whitespace collapsed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find("*** START"), text.find("*** END")
    body = text[text.find("\n", start) + 1:end]
    return [p for p in (" ".join(p.split()) for p in re.split(r"\n\s*\n", body)) if len(p) > 200]


def _sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", paragraph)


def _short(s: str) -> bool:
    return 25 <= len(s) <= 120


@pytest.fixture(scope="module")
def alice(shared_data: Path) -> dict[str, list[str]]:
    return {lang: _paragraphs(shared_data / "prose" / f"gutenberg-alice.{lang}.txt") for lang in LANGS}


@pytest.fixture(scope="module")
def cloze_rows(alice) -> list[dict]:
    """Generic rows: a sentence, then the sentence after it in its paragraph (gold) or one of three
    sentences of similar length from other paragraphs of the same book; gold at a random position."""
    rng = random.Random(0)
    rows = []
    for lang, paras in alice.items():
        sents = [_sentences(p) for p in paras]
        taken = 0
        for pi, ss in enumerate(sents):
            pairs = [(a, b) for a, b in zip(ss, ss[1:]) if _short(a) and _short(b)]
            if not pairs:
                continue
            context, true = pairs[0]
            others = sorted((s for pj, o in enumerate(sents) if pj != pi for s in o if _short(s)),
                            key=lambda s: abs(len(s) - len(true)))
            wrong = rng.sample(others[:20], 3)
            gold = rng.randrange(4)
            rows.append({"context": context, "choices": wrong[:gold] + [true] + wrong[gold:], "gold": gold,
                         "lang": lang})
            taken += 1
            if taken == ITEMS_PER_LANG:
                break
    return rows


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cloze_file(tmp_path_factory, cloze_rows) -> Path:
    return _write_jsonl(tmp_path_factory.mktemp("tasks") / "alice_cloze.jsonl", cloze_rows)


class KGramScorer:
    """A deterministic test double of the Scorer protocol: a k-gram model that memorized the book
    (token counts, additive smoothing; an unseen k-token history predicts uniformly). Inside any
    sentence of the book it is near-certain; across a sentence boundary only the book's own order
    is memorized, so it must prefer the true next sentence, and only given the context."""

    def __init__(self, docs: list[list[int]], vocab: int, k: int = 4, alpha: float = 1e-4):
        self.k, self.alpha, self.vocab = k, alpha, vocab
        self.next: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        for ids in docs:
            for t in range(1, len(ids)):
                self.next[tuple(ids[max(0, t - k):t])][ids[t]] += 1

    def window_nll(self, ids):
        out = np.empty(len(ids) - 1)  # (T-1,)
        for t in range(1, len(ids)):
            seen = self.next.get(tuple(ids[max(0, t - self.k):t]), Counter())
            out[t - 1] = -np.log((seen[ids[t]] + self.alpha) / (sum(seen.values()) + self.alpha * self.vocab))
        return out


# ----------------------------------------------------------------------------- loading and errors

def test_formats_detected_and_normalised(tmp_path: Path, alice) -> None:
    para = alice["fr"][3]
    s = _sentences(para)
    hs = _write_jsonl(tmp_path / "hs.jsonl", [
        {"activity_label": "Alice", "ctx_a": s[0], "ctx_b": "puis elle", "endings": [s[1], s[2], "x [title] y"],
         "label": "1", "lang": "fr"},
        {"ctx": s[0], "endings": [s[1], s[2]], "label": 0},
    ])
    items = load_task(hs)
    assert items[0].context == f"Alice: {s[0]} Puis elle"  # lm-eval: ctx_a + " " + ctx_b.capitalize()
    assert items[0].choices[2] == "x. y" and items[0].gold == 1 and items[0].lang == "fr"
    assert items[1].context == s[0] and items[1].lang is None and items[1].where == f"{hs}:2"

    bb_row = {"flores_passage": para, "question": " Qui parle ? ", "mc_answer1": "Alice", "mc_answer2": "le Lapin",
              "mc_answer3": "la Reine", "mc_answer4": "le Chat", "correct_answer_num": "2", "dialect": "fra_Latn"}
    bb = _write_jsonl(tmp_path / "bb.jsonl", [bb_row, {**bb_row, "correct_answer_num": 4, "lang": "fr"}])
    items = load_task(bb)
    assert items[0].context == (f"P: {para}\nQ: Qui parle ?\nA: Alice\nB: le Lapin\nC: la Reine\nD: le Chat\n"
                                "Answer\uff1a")
    assert items[0].choices == ("A", "B", "C", "D") and items[0].gold == 1 and items[0].lang == "fra_Latn"
    assert items[1].gold == 3 and items[1].lang == "fr"
    cloze = load_task(bb, format="belebele_cloze", lang="xx")
    assert cloze[0].context == f"P: {para}\nQ: Qui parle ?\nA:"
    assert cloze[0].choices == ("Alice", "le Lapin", "la Reine", "le Chat") and cloze[0].gold == 1

    gen = _write_jsonl(tmp_path / "gen.jsonl", [{"query": s[0], "choices": [s[1], s[2]], "gold": 1}, "",
                                                {"context": s[1], "choices": [s[2], s[0]], "gold": 0}])
    items = load_task(gen, lang="fr")
    assert [it.gold for it in items] == [1, 0] and all(it.lang == "fr" for it in items)
    assert len(load_task(gen, limit=1)) == 1


GOOD = {"context": "Alice was beginning to get very tired", "choices": [" of sitting", " of running"], "gold": 0}


@pytest.mark.parametrize("lines,fmt,message", [
    ([GOOD, '{"context": "x", "choices": ["a", "b"], "gold": 0'], "auto", r":2: not valid JSON"),
    ([GOOD, {"context": "x", "choices": ["a", "b"]}], "auto", r":2: missing key 'gold'; a generic row needs"),
    ([GOOD, {"choices": ["a", "b"], "gold": 1}], "auto", r":2: missing key 'context' \(or 'query'\)"),
    ([{"ctx": "x", "label": 0}], "hellaswag", r":1: missing key 'endings'; a hellaswag row needs"),
    ([{"endings": ["a", "b"], "label": 0}], "auto", r":1: missing key 'ctx' \(or 'ctx_a' and 'ctx_b'\)"),
    ([GOOD, {**GOOD, "gold": 2}], "auto", r":2: gold answer 2 is out of range for 2 choices \(0..1\)"),
    ([{**GOOD, "gold": -1}], "auto", r":1: gold answer -1 is out of range"),
    ([{"ctx": "x", "endings": ["a", "b"], "label": ""}], "auto", r":1: 'label' is ''; expected the 0-based index"),
    ([{"flores_passage": "p", "question": "q", "mc_answer1": "a", "mc_answer2": "b", "mc_answer3": "c",
       "mc_answer4": "d", "correct_answer_num": "5"}], "auto", r":1: correct_answer_num 5 is out of range \(1..4"),
    ([{"flores_passage": "p", "question": "q", "mc_answer1": "a", "mc_answer2": "b", "mc_answer3": "c",
       "correct_answer_num": 1}], "auto", r":1: missing key 'mc_answer4'; a belebele row needs"),
    ([{**GOOD, "choices": ["only one"]}], "auto", r":1: 1 choice\(s\); .* at least 2"),
    ([{**GOOD, "choices": ["a", ""]}], "auto", r":1: choice 1 is ''"),
    ([{**GOOD, "lang": 3}], "auto", r":1: 'lang' must be a string"),
    ([{"text": "no task here"}], "auto", r":1: cannot tell the task format from keys \['text'\]"),
    ([["a", "list"]], "auto", r":1: expected a JSON object, got list"),
    ([""], "auto", r"holds no items"),
])
def test_bad_rows_name_file_line_and_key(tmp_path: Path, lines, fmt, message) -> None:
    path = _write_jsonl(tmp_path / "task.jsonl", lines)
    with pytest.raises(SmoledgeError, match=message) as exc:
        load_task(path, format=fmt)
    assert str(path) in str(exc.value)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(SmoledgeError, match="nope.jsonl does not exist"):
        load_task(tmp_path / "nope.jsonl")
    path = _write_jsonl(tmp_path / "t.jsonl", [GOOD])
    with pytest.raises(SmoledgeError, match=r"unknown task format 'mmlu'; choose auto or one of hellaswag, belebele"):
        load_task(path, format="mmlu")


# ----------------------------------------------------------------------------- scoring

def test_encode_pair_follows_lm_eval(tok) -> None:
    ctx, cont = encode_pair(tok, "Alice was beginning to get very tired of", " sitting by her sister")
    whole = tok.encode("Alice was beginning to get very tired of sitting by her sister", add_special_tokens=False)
    assert ctx + cont == whole and ctx == tok.encode("Alice was beginning to get very tired of",
                                                     add_special_tokens=False)
    # The context's trailing space moves onto the continuation, so " sitting" stays one word.
    assert encode_pair(tok, "tired of ", "sitting") == encode_pair(tok, "tired of", " sitting")
    # An empty context is EOS (lm-eval's prefix token).
    ctx, cont = encode_pair(tok, "", " Alice")
    assert ctx == [tok.eos_token_id] and cont == tok.encode(" Alice", add_special_tokens=False)


def test_loglikelihood_matches_torch_and_truncates_context(tiny_model_dir: Path, tok) -> None:
    import torch

    scorer = TorchScorer(tiny_model_dir)
    ctx, cont = encode_pair(tok, "So she was considering in her own mind (as well as she could, for the hot day "
                                 "made her feel very sleepy and stupid),", " whether the pleasure of making")

    def direct(ids: list[int], n_cont: int) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(scorer.model(torch.tensor([ids])).logits[0].double(), -1)  # (T, V)
        return sum(logp[t - 1, ids[t]].item() for t in range(len(ids) - n_cont, len(ids)))

    full = continuation_loglikelihood(scorer, ctx, cont, seq_len=256)
    assert full == pytest.approx(direct(ctx + cont, len(cont)), abs=1e-4)
    short = continuation_loglikelihood(scorer, ctx, cont, seq_len=len(cont) + 3)
    # Only the last 3 context ids remain: a different (less informed) score of the same tokens.
    assert short == pytest.approx(direct(ctx[-3:] + cont, len(cont)), abs=1e-4) and short != full
    with pytest.raises(SmoledgeError, match=r"a choice is \d+ tokens, more than seq_len - 1 = 4"):
        continuation_loglikelihood(scorer, ctx, cont, seq_len=5, where="t.jsonl:7")


def test_aggregate_metrics_and_stderr() -> None:
    items = [Item("c", ("a", "bbbb"), 1, "en", "x:1"), Item("c", ("aa", "b"), 0, "en", "x:2"),
             Item("c", ("é", "ee", "fff"), 2, "fr", "x:3")]
    lls = [np.array([-1.0, -2.0]), np.array([-1.0, -3.0]), np.array([-4.0, -3.0, -3.3])]
    r = aggregate(items, lls)
    # acc: argmax ll -> 0, 0, 1; acc_norm (per character): -1/1 vs -2/4 -> 1; -1/2 vs -3 -> 0; -4, -1.5, -1.1 -> 2.
    assert (r.acc, r.acc_norm) == (pytest.approx(1 / 3), 1.0)
    # acc_bytes: "é" is 2 bytes: -2.0, -1.5, -1.1 -> 2 as well.
    assert r.acc_bytes == 1.0 and r.n == 3 and r.chance == pytest.approx((0.5 + 0.5 + 1 / 3) / 3)
    assert r.acc_stderr == pytest.approx(np.std([0, 1, 0], ddof=1) / np.sqrt(3))
    assert set(r.languages) == {"en", "fr"} and r.languages["en"].n == 2 and r.languages["fr"].acc == 0.0
    d = r.to_dict()
    assert d["languages"]["fr"]["acc_norm"] == 1.0 and "loglikelihoods" not in d
    assert np.isnan(mean_stderr(np.array([1.0])))


def test_memorizing_scorer_must_pick_the_true_next_sentence(tok, cloze_file: Path, alice) -> None:
    items = load_task(cloze_file)
    assert len(items) == ITEMS_PER_LANG * len(LANGS) and {it.lang for it in items} == set(LANGS)
    book = [tok.encode(p, add_special_tokens=False) + [tok.eos_token_id] for paras in alice.values() for p in paras]
    scorer = KGramScorer(book, vocab=len(tok))
    seen = []
    result = run_task(scorer, tok, items, seq_len=256, on_item=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (len(items), len(items))
    assert result.acc == result.acc_norm == result.acc_bytes == 1.0
    assert all(r.acc == 1.0 and r.n == ITEMS_PER_LANG for r in result.languages.values())
    assert result.chance == 0.25 and result.acc_stderr == 0.0
    # Without its context, the same scorer can only guess at the boundary: the context decided.
    blind = run_task(scorer, tok, [Item("", it.choices, it.gold, it.lang, it.where) for it in items], seq_len=256)
    assert blind.acc < 0.7


def test_hf_and_gguf_pick_the_same_choices(tiny_model_dir: Path, tiny_gguf: Path, tok, cloze_file: Path) -> None:
    pytest.importorskip("llama_cpp")
    from smoledge.evaluate.perplexity import GGUFScorer

    items = load_task(cloze_file)[::6]  # 8 items, 2 per language
    ref = run_task(TorchScorer(tiny_model_dir), tok, items, seq_len=128)
    got = run_task(GGUFScorer(tiny_gguf, seq_len=128), tok, items, seq_len=128)
    a, b = np.array(ref.loglikelihoods), np.array(got.loglikelihoods)  # (items, 4)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)  # measured: ~5e-7 nats
    assert (a.argmax(1) == b.argmax(1)).all()
    assert ref.to_dict() == got.to_dict()
    # A random model, near-uniform over 1024 ids: each choice costs roughly log(1024) nats per token.
    lens = np.array([[len(encode_pair(tok, it.context, " " + c)[1]) for c in it.choices] for it in items])
    assert np.all((-a / lens > 4) & (-a / lens < 10))


def test_choice_loglikelihoods_one_per_choice(tiny_model_dir: Path, tok, cloze_file: Path) -> None:
    item = load_task(cloze_file, limit=1)[0]
    lls = choice_loglikelihoods(TorchScorer(tiny_model_dir), tok, item, seq_len=256)
    assert lls.shape == (4,) and np.all(lls < 0) and len(set(lls.tolist())) == 4


# ----------------------------------------------------------------------------- eval sets

def test_eval_set_packs_like_the_curated_valid_split(tmp_path: Path, tiny_model_dir: Path, tok, alice) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from smoledge.evaluate.stage import held_out_ids

    docs = [(lang, p) for lang in LANGS for p in alice[lang][10:16]]
    rows = [{"text": t, "lang": lang} if i % 2 else {"text": t} for i, (lang, t) in enumerate(docs)]
    # Rows without "lang" take the set's default: give those the default by splitting per language.
    for lang in LANGS:
        _write_jsonl(tmp_path / f"{lang}.jsonl", [r for r, (l, _) in zip(rows, docs) if l == lang] + [""])
    pq.write_table(pa.Table.from_pylist([{"text": t, "lang": lang, "split": "valid"} for lang, t in docs]
                                        + [{"text": "training text", "lang": "en", "split": "train"}]),
                   tmp_path / "curated.parquet")
    want = held_out_ids(tmp_path / "curated.parquet", tok, max_tokens=700)
    got = {}
    for lang in LANGS:
        got.update(load_eval_set(tmp_path / f"{lang}.jsonl", tok, max_tokens=700, default_lang=lang))
    assert got == want and list(got) == sorted(got)
    assert all(len(ids) == 700 for ids in got.values())  # six paragraphs exceed the cap

    # One file, languages per row, uncapped: every document followed by EOS.
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", [{"text": t, "lang": lang} for lang, t in docs])
    full = load_eval_set(mixed, tok, max_tokens=10**6)
    for lang in LANGS:
        expect = [i for l, t in docs if l == lang for i in tok.encode(t, add_special_tokens=False) + [tok.eos_token_id]]
        assert full[lang] == expect and got[lang] == expect[:700]  # the cap keeps a prefix
    s = score(TorchScorer(tiny_model_dir), full["it"][:300], token_byte_lengths(tok), seq_len=128)
    assert s.tokens == 299 and 300 < s.ppl < 3000


@pytest.mark.parametrize("lines,default,message", [
    ([{"text": "ok", "lang": "en"}, '{"text": "broken"'], None, r":2: not valid JSON"),
    ([{"lang": "en"}], None, r":1: missing key 'text'"),
    ([{"text": 5, "lang": "en"}], None, r":1: 'text' must be a string"),
    ([{"text": "no language"}], None, r":1: missing key 'lang' and the eval set names no default"),
    ([{"text": "x", "lang": ""}], "en", r":1: 'lang' must be a non-empty string"),
    ([[1, 2]], "en", r":1: expected a JSON object, got list"),
    ([{"text": ""}], "en", r"has no text to score"),
])
def test_eval_set_errors_name_file_and_line(tmp_path: Path, tok, lines, default, message) -> None:
    path = _write_jsonl(tmp_path / "set.jsonl", lines)
    with pytest.raises(SmoledgeError, match=message) as exc:
        load_eval_set(path, tok, max_tokens=512, default_lang=default)
    assert str(path) in str(exc.value)


def test_eval_set_packing_edge_cases(tmp_path: Path, tok) -> None:
    with pytest.raises(SmoledgeError, match="does not exist"):
        read_documents(tmp_path / "missing.jsonl")
    # Once a language is full, later documents of it are not even tokenized; empty texts are skipped.
    packed = pack_documents([("en", "Down the Rabbit-Hole"), ("en", ""), ("en", "x" * 50), ("fr", "Le")], tok, 3)
    assert packed["en"] == tok.encode("Down the Rabbit-Hole", add_special_tokens=False)[:3]
    assert packed["fr"] == tok.encode("Le", add_special_tokens=False) + [tok.eos_token_id]
