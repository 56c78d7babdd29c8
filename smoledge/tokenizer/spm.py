"""SentencePiece BPE tokenizers (Llama 2, TinyLlama, Phi-3, Gemma) as llama.cpp's `llama` tokenizer.

    from smoledge.tokenizer.spm import spm_vocab
    vocab = spm_vocab(tok_json, tok_cfg, vocab_size=32064, where="phi3/tokenizer.json")  # a GGUFVocab

llama.cpp's SentencePiece tokenizer is one fixed algorithm, configured only by data: spell spaces '▁'
(prepending one when add_space_prefix is on, also after every special token), cut the text into
characters, then keep merging the adjacent pair whose concatenation is a piece with the highest score;
characters left over become their <0xXX> byte pieces. So the mapping is: the pieces, a score per piece,
token types, and add_space_prefix read off the HF normalizer / pre-tokenizer. Everything else an HF
tokenizer.json can say has no GGUF key and is refused up front, naming the fix, instead of being left
for the gate to find on some text or not (gguf_vocab still runs llama.cpp on the result against HF).

Scores. An HF `BPE` with byte_fallback (what transformers makes of a SentencePiece BPE model: Llama 2,
Phi-3, Gemma) has merges, not scores; llama.cpp's own converter writes -1000 for every piece of such a
file (gguf-py's LlamaHfVocab: a placeholder), under which llama.cpp merges left to right and tokenizes
differently. Here a piece scores minus the rank of its first merge, which orders the pairs as HF's
ranks do. That needs the merges SentencePiece-shaped: every split of a piece into two pieces is a
merge (llama.cpp merges any such pair; HF only listed ones). transformers' converter makes them so; a
BPE trained by HF tokenizers with byte_fallback does not, and is refused. It is exact when moreover a
piece's merges are adjacent in rank, as the converter ranks them; where they are not (Gemma 4's runs
of whitespace), llama.cpp could pick pairs in another order, and the gate also runs those pieces.

Unigram models are refused: their scores are log-probabilities for a most-likely segmentation
(Viterbi), and llama.cpp's `llama` tokenizer merges greedily by score instead; on a Unigram trained on
smoledge's own sources the two already differ at the third token of the first probe text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.tokenizer.gguf_vocab import SPM_MODEL, GGUFVocab, fill_specials, padded_tokens, vocab_by_id

SPACE = "\u2581"
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
SUPPORTED_FORMS = ("normalizer Sequence[Prepend('▁'), Replace(' ', '▁')] and no pre-tokenizer (Llama 2, TinyLlama, "
                   "Phi-3: add_space_prefix), normalizer Replace(' ', '▁') and no pre-tokenizer (Gemma), or no "
                   "normalizer and a Metaspace pre-tokenizer with prepend_scheme 'never'")
# Added tokens in the gate's special-token probes (Gemma has thousands; a few show the behaviour).
MAX_SPECIAL_PROBES = 24
# Pieces whose merges are scattered in rank (Gemma 4's whitespace runs) the gate tries one text each.
MAX_SCATTERED_PROBES = 256
# Vocabulary probes: about this many pieces, glued together in texts of PIECES_PER_PROBE.
VOCAB_PROBE_PIECES, PIECES_PER_PROBE = 2048, 64


def spm_vocab(tok_json: dict[str, Any], tok_cfg: dict[str, Any], vocab_size: int, where: str) -> GGUFVocab:
    """The GGUF vocabulary (tokenizer.ggml.model = llama) of a SentencePiece-style tokenizer.json, padded to
    `vocab_size`; raises SmoledgeError, naming the fix, for anything llama.cpp would run differently."""
    from gguf import TokenType

    model = tok_json.get("model") or {}
    _check_model(model, where)
    add_space_prefix = space_prefix(tok_json, where)
    _check_added_tokens(tok_json, add_space_prefix, where)
    by_id, types = vocab_by_id(tok_json, vocab_size, where)
    pieces: dict[str, int] = model["vocab"]
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in pieces]
    if missing:
        raise SmoledgeError(
            f"tokenizer ({where}) lacks {len(missing)} byte pieces (e.g. {missing[0]}): llama.cpp spells every "
            "character outside the vocabulary as <0x00>..<0xFF> pieces and cannot run without all 256. "
            "Train the SentencePiece model with byte_fallback=True")
    added = {a["content"] for a in tok_json.get("added_tokens", [])}
    scores = merge_scores(model, pieces, added, where)

    tokens, token_types = padded_tokens(by_id, types, vocab_size)
    for piece, i in pieces.items():
        if i not in types:  # added tokens keep vocab_by_id's CONTROL / USER_DEFINED
            token_types[i] = int(TokenType.BYTE if BYTE_PIECE.fullmatch(piece) else TokenType.NORMAL)
    vocab = GGUFVocab(model=SPM_MODEL, tokens=tokens, types=token_types,
                      scores=[scores.get(t, 0.0) for t in tokens],
                      add_space_prefix=add_space_prefix)
    fill_specials(vocab, by_id, types, tok_json, tok_cfg)
    if vocab.unk is None:
        vocab.unk = pieces.get(model.get("unk_token") or "")
    if vocab.unk is not None:
        token_types[vocab.unk] = int(TokenType.UNKNOWN)  # what llama.cpp's SentencePiece converter writes
    return vocab


def _check_model(model: dict[str, Any], where: str) -> None:
    """Refuse models and model options llama.cpp's SentencePiece algorithm has no equivalent for."""
    kind = model.get("type")
    if kind == "Unigram":
        unknown = "" if model.get("byte_fallback") else (", and it maps characters outside the vocabulary to <unk> "
                                                          "where llama.cpp spells their bytes")
        raise SmoledgeError(
            f"tokenizer model is Unigram ({where}): it picks the most likely segmentation of a text, while llama.cpp's "
            "SentencePiece tokenizer merges pieces greedily by score (SentencePiece's BPE algorithm), so ids would "
            f"differ{unknown}. Train the SentencePiece model with model_type=bpe and byte_fallback=True (as Llama 2 "
            "and Gemma are), or use a byte-level BPE")
    if kind != "BPE":
        raise SmoledgeError(f"tokenizer model is {kind!r} ({where}); llama.cpp runs byte-level BPE and SentencePiece "
                            "BPE (byte_fallback) tokenizers only. Use one of those")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "ignore_merges"):
        if model.get(key) not in (None, False, 0, ""):
            raise SmoledgeError(f"tokenizer BPE model has {key}={model[key]!r} ({where}); llama.cpp's SentencePiece "
                                f"tokenizer has no such option. Save the tokenizer without it (null/false)")


def _steps(normalizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A normalizer as a flat list of steps (nested Sequences unpacked)."""
    if normalizer is None:
        return []
    if normalizer.get("type") == "Sequence":
        return [s for n in normalizer.get("normalizers", []) for s in _steps(n)]
    return [normalizer]


def space_prefix(tok_json: dict[str, Any], where: str) -> bool:
    """llama.cpp's add_space_prefix for the tokenizer's normalizer / pre-tokenizer (see SUPPORTED_FORMS)."""
    steps = [json.dumps(s, sort_keys=True) for s in _steps(tok_json.get("normalizer"))]
    prepend = json.dumps({"type": "Prepend", "prepend": SPACE}, sort_keys=True)
    replace = json.dumps({"type": "Replace", "pattern": {"String": " "}, "content": SPACE}, sort_keys=True)
    pre = tok_json.get("pre_tokenizer")
    if pre == {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False} \
            and replace in steps:
        pre = None  # Gemma's: splits at spaces the normalizer has already spelled '▁', so it never cuts
    if pre is None and steps == [prepend, replace]:
        return True
    if pre is None and steps == [replace]:
        return False
    # Top-level NFC only: gguf_vocab then gates on NFC text and marks the vocabulary as needing it.
    metaspace = (pre is not None and pre.get("type") == "Metaspace" and pre.get("replacement") == SPACE
                 and tok_json.get("normalizer") in (None, {"type": "NFC"}))
    if metaspace:
        scheme = pre.get("prepend_scheme") or ("always" if pre.get("add_prefix_space", True) else "never")
        if scheme != "never":
            where_not = " and only at its very start" if scheme == "first" else ""
            raise SmoledgeError(
                f"tokenizer pre-tokenizer Metaspace(prepend_scheme={scheme!r}) ({where}): it prepends '▁' only where "
                f"the text does not already start with a space{where_not}, while llama.cpp's add_space_prefix always "
                "prepends one, also after special tokens, so ids differ for text starting with a space. Save the "
                "tokenizer in the form Llama 2 publishes: normalizer Sequence[Prepend('▁'), Replace(' ', '▁')] and "
                "no pre-tokenizer")
        # tokenizers reads a Metaspace without the key (older files) as split=true
        if pre.get("split", True) and any(SPACE in piece[1:] for piece in tok_json["model"]["vocab"]):
            raise SmoledgeError(
                f"tokenizer pre-tokenizer Metaspace(split=true) ({where}) cuts the text at every space, but its "
                "vocabulary has pieces with '▁' inside (e.g. runs of spaces), which llama.cpp forms across those "
                "cuts. Save the tokenizer with split=false")
        return False
    what = json.dumps({"normalizer": tok_json.get("normalizer"), "pre_tokenizer": pre})[:300]
    raise SmoledgeError(
        f"tokenizer ({where}) normalizes or pre-tokenizes text in a way llama.cpp's SentencePiece tokenizer does not "
        f"({what}): llama.cpp only spells spaces '▁', optionally prepending one, and applies no other normalization "
        f"(NFKC, lowercasing, a precompiled charsmap) or splitting. Supported: {SUPPORTED_FORMS}. Use the tokenizer "
        "in one of these forms, trained without the extra normalization")


def _check_added_tokens(tok_json: dict[str, Any], add_space_prefix: bool, where: str) -> None:
    """Refuse added-token options GGUF cannot express: llama.cpp splits every added token out of the raw
    text, keeping the whitespace around it, before anything else happens."""
    for added in tok_json.get("added_tokens", []):
        flags = [k for k in ("lstrip", "rstrip", "single_word") if added.get(k)]
        if flags:
            raise SmoledgeError(
                f"added token {added['content']!r} has {'/'.join(flags)}=true ({where}): HF strips whitespace beside "
                "it or matches it only as a whole word, and GGUF has no key for that, so llama.cpp would tokenize "
                f"that whitespace as text. Set {'/'.join(flags)} false for it in tokenizer.json (and make the chat "
                "template spell the whitespace it relied on)")
        if added.get("normalized") and (add_space_prefix or " " in added["content"]):
            raise SmoledgeError(
                f"added token {added['content']!r} has normalized=true ({where}): HF finds it only after spelling "
                "spaces '▁' (and prepending one), llama.cpp finds it in the raw text first, so the ids around it "
                "differ. Set normalized false for it in tokenizer.json, as Llama 2's tokenizer does")


def merge_list(model: dict[str, Any]) -> list[tuple[str, str]]:
    """A BPE model's merges as (left, right), whichever of the two tokenizer.json spellings it uses."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]


def merge_scores(model: dict[str, Any], pieces: dict[str, int], added: set[str], where: str) -> dict[str, float]:
    """SentencePiece scores equivalent to a BPE's merges (see the module docstring): minus the rank of a
    piece's first merge; characters score below every merged piece, byte pieces 0 (as in Llama 2's
    tokenizer.model; neither is ever a merge). `added`: the added tokens' strings, which both sides split
    out of the text before any merging."""
    merges = merge_list(model)
    rank: dict[str, int] = {}
    for r, (left, right) in enumerate(merges):
        rank.setdefault(left + right, r)
    listed = set(merges)
    formable = {p for p in pieces if p not in added and not BYTE_PIECE.fullmatch(p)}
    # llama.cpp holds a piece or a single character as one symbol while merging
    unlisted = [f"{p[:cut]!r} + {p[cut:]!r}" for p in formable for cut in range(1, len(p))
                if (p[:cut], p[cut:]) not in listed and (cut == 1 or p[:cut] in formable)
                and (cut == len(p) - 1 or p[cut:] in formable)]
    if unlisted:
        raise SmoledgeError(
            f"tokenizer ({where}) is a BPE with byte_fallback whose merges are not SentencePiece-shaped: "
            f"{len(unlisted)} pairs of pieces that form a piece are not merges (e.g. {', '.join(unlisted[:3])}). "
            "llama.cpp's SentencePiece tokenizer merges any two adjacent pieces whose concatenation is a piece, so "
            "it would form tokens HF does not. Train the tokenizer with sentencepiece (model_type=bpe, "
            "byte_fallback=True) and convert it with transformers, or train a byte-level BPE (smoledge's own), "
            "which exports as llama.cpp's gpt2 tokenizer")
    last = len(merges)
    return {p: float(-rank[p]) if p in rank else 0.0 if BYTE_PIECE.fullmatch(p) else float(-last - i)
            for p, i in pieces.items()}


def scattered_pieces(merges: list[tuple[str, str]]) -> list[str]:
    """Pieces whose merges are not adjacent in rank (other pieces' merges rank between them): llama.cpp
    gives all of a piece's pairs its one score, so such pairs may be merged in another order than HF's."""
    seen: set[str] = set()
    scattered: dict[str, None] = {}
    previous = None
    for left, right in merges:
        piece = left + right
        if piece in seen and piece != previous:
            scattered[piece] = None
        seen.add(piece)
        previous = piece
    return list(scattered)


def spm_probe_texts(tok_json: dict[str, Any]) -> list[str]:
    """Gate texts for a SentencePiece vocabulary beyond PROBE_TEXTS: its added tokens inside text (where the
    space prefix after a special token and the splitting around it show), pieces whose merges are
    scattered in rank, alone and repeated (where their order could differ from HF's), and runs of the
    vocabulary's own pieces glued together."""
    added = [a["content"] for a in tok_json.get("added_tokens", [])]
    # These check ids. Ending each with a special token also skips the gate's detokenization check, which
    # would fail on llama.cpp's own choice to hide some non-special tokens it deems control (Phi-3's </s>).
    end = next((a["content"] for a in tok_json.get("added_tokens", []) if a.get("special")), "")
    texts = [f"{t}Hello{t} world {t}\n{t}\t x{t}{t}.{end}" for t in added[:MAX_SPECIAL_PROBES]]
    for piece in scattered_pieces(merge_list(tok_json["model"]))[:MAX_SCATTERED_PROBES]:
        text = piece.replace(SPACE, " ")
        texts.append(f"{text}a{text}{text}a{text[0]}{text}{text[-1]}a{text[:-1]}a{text[1:]}")
    skip = set(added)
    pieces = [p for p in tok_json["model"]["vocab"] if not BYTE_PIECE.fullmatch(p) and p not in skip]
    step = max(1, len(pieces) // VOCAB_PROBE_PIECES)
    picked = [p.replace(SPACE, " ") for p in pieces[::step]]
    return texts + ["".join(picked[k:k + PIECES_PER_PROBE]) for k in range(0, len(picked), PIECES_PER_PROBE)]
