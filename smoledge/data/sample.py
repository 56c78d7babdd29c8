"""The built-in sample corpus: a deterministic synthetic six-language "web dump".

Nothing can be downloaded at build time, so the default recipe reads web
pages generated here from per-language probabilistic grammars
(smoledge.data.lexicon: real vocabulary over six topics, varied sentence
shapes, numbers and dates). Like a real crawl it carries the defects that
curation must remove, in known proportions:

  clean        a page of prose in en/fr/es/de/it/pt
  passkey      a 5-digit passkey stated early, asked and answered at the end
               (a long-range dependency for the model to learn)
  exact_dup    a copy of an earlier page (sometimes with whitespace changes)
  near_dup     an earlier page with a few words changed or a sentence added
               (Jaccard of word 5-gram shingles 0.82-0.95 with its original)
  boilerplate  a clean page wrapped in navigation, cookie, share, footer lines
  spam         repeated lines, keyword stuffing or hashtag lists
  foreign      a page in a language outside the six (nl, pl, sv, tr, id)
  pii          a clean page with e-mail addresses and public IPv4 addresses

Each record is {"id", "url", "text", "meta": {"lang", "kind", ...}}; `meta`
is ground truth for tests only: curation never reads it. Same seed ->
byte-identical output.

    smoledge sample data/web_dump.jsonl --docs 2400 --seed 1234
    from smoledge.data.sample import generate
    for rec in generate(100, seed=7): print(rec["meta"]["kind"], rec["text"][:60])
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from smoledge.data.lexicon import FOREIGN, LANGUAGE_MODULES
from smoledge.data.lexicon.foreign import SITES as FOREIGN_SITES
from smoledge.io import atomic_path

# Bump whenever the generated output changes (curate fingerprints it).
SAMPLE_VERSION = 2

LANGUAGES = ("en", "fr", "es", "de", "it", "pt")
TOPICS = ("weather", "cooking", "travel", "science", "sport", "city")

# Share of each defect; what is left over is clean text.
DEFECT_MIX = {
    "passkey": 0.07,
    "exact_dup": 0.06,
    "near_dup": 0.06,
    "pii": 0.05,
    "boilerplate": 0.04,
    "spam": 0.03,
    "foreign": 0.03,
}
KINDS = ("clean", *DEFECT_MIX)

MIN_WORDS, MAX_WORDS = 80, 400          # body length of a page
NEAR_DUP_JACCARD = (0.82, 0.95)          # word 5-gram shingle Jaccard with the original
TOPIC_SENTENCE_SHARE = 0.75              # the rest come from the language's generic sentences
CONNECTIVE_RATE = 0.15                   # sentences prefixed by "however," etc.
# Statements joined to the previous one by "and": web prose has longer sentences than the
# templates, and FineWeb2's share-of-alphabetic-words floor (es: 0.825) counts every "." as a word.
JOIN_RATE = 0.3
_AND = {"en": "and", "fr": "et", "es": "y", "de": "und", "it": "e", "pt": "e"}
TITLE_RATE = 0.6                         # pages that start with a title line
MIN_SENTENCES = 6                        # C4's rule (FineWeb, English) drops pages with fewer than 5

_REF = re.compile(r"\{(@?)([a-z_0-9]+)\}")
_WORD = re.compile(r"\w+")
# Decimal comma everywhere but English.
_DECIMAL = {"en": "."}


# ----------------------------------------------------------------------------- numbers

def _clock(rng: random.Random, lang: str) -> str:
    h, m = rng.randint(6, 22), rng.choice((0, 15, 30, 45))
    if lang == "fr":
        return f"{h}h{m:02d}"
    if lang == "pt":
        return f"{h}h{m:02d}"
    if lang == "de":
        return f"{h}:{m:02d} Uhr"
    return f"{h}:{m:02d}"


def _price(rng: random.Random, lang: str) -> str:
    return f"{rng.randint(2, 99)}{_DECIMAL.get(lang, ',')}{rng.choice(('00', '50', '90', '95', '99'))}"


def _score(rng: random.Random, lang: str) -> str:
    a = rng.randint(1, 5)
    return f"{a}-{rng.randint(0, a - 1)}"


BUILTINS: dict[str, Callable[[random.Random, str], str]] = {
    "n2_9": lambda rng, lang: str(rng.randint(2, 9)),
    "n10_99": lambda rng, lang: str(rng.randint(10, 99)),
    "n100_999": lambda rng, lang: str(rng.randint(100, 999)),
    "minutes": lambda rng, lang: str(rng.randint(10, 59)),
    "year": lambda rng, lang: str(rng.randint(1985, 2023)),
    "future_year": lambda rng, lang: str(rng.randint(2030, 2060)),
    "day_num": lambda rng, lang: str(rng.randint(1, 28)),
    "temp": lambda rng, lang: str(rng.randint(-5, 38)),
    "pct": lambda rng, lang: str(rng.randint(5, 95)),
    "oven": lambda rng, lang: str(rng.randrange(160, 230, 10)),
    "price": _price,
    "clock": _clock,
    "score": _score,
}


# ----------------------------------------------------------------------------- grammar

def _alternatives(value: str | list[str]) -> list[str]:
    return value.split("|") if isinstance(value, str) else list(value)


@lru_cache(maxsize=None)
def _rules(lang: str, topic: str | None) -> dict[str, list[str]]:
    """The merged rule table of one language (topic rules shadow common ones)."""
    if lang in FOREIGN:
        return {k: _alternatives(v) for k, v in FOREIGN[lang].items()}
    mod = LANGUAGE_MODULES[lang]
    table = {k: _alternatives(v) for k, v in mod.COMMON.items()}
    if topic is not None:
        table.update({k: _alternatives(v) for k, v in mod.TOPICS[topic].items()})
    return table


class _Expander:
    """Expands templates of one document; {@name} values stay fixed for the document."""

    def __init__(self, rng: random.Random, lang: str, topic: str | None):
        self.rng, self.lang = rng, lang
        self.rules = _rules(lang, topic)
        self.bound: dict[str, str] = {}
        self._used: dict[str, set[str]] = {}

    def sentence(self, template: str) -> str:
        self._used = {}  # within one sentence, avoid "cold and often cold"
        return self.expand(template)

    def _pick(self, name: str) -> str:
        alts = self.rules[name]
        used = self._used.setdefault(name, set())
        choice = self.rng.choice(alts)
        for _ in range(3):
            if choice not in used:
                break
            choice = self.rng.choice(alts)
        used.add(choice)
        return choice

    def expand(self, template: str) -> str:
        def sub(m: re.Match) -> str:
            bind, name = m.group(1), m.group(2)
            if bind and name in self.bound:
                return self.bound[name]
            if name in BUILTINS:
                value = BUILTINS[name](self.rng, self.lang)
            else:
                value = self.expand(self._pick(name))
            if bind:
                self.bound[name] = value
            return value

        return _REF.sub(sub, template)


def _capitalize(s: str) -> str:
    """Upper-case the first letter (after any ¿ ¡ or quote)."""
    for i, ch in enumerate(s):
        if ch.isalpha():
            return s[:i] + ch.upper() + s[i + 1:]
    return s


# ----------------------------------------------------------------------------- page bodies

def _prose(rng: random.Random, ex: _Expander, lang: str, target_words: int) -> list[str]:
    """Paragraphs of topic prose, about `target_words` words."""
    conn = ex.rules.get("conn", [])
    # Each template is used at most once per page, and the page ends when both
    # pools run dry: a template said twice repeats its fixed words, which is
    # what Gopher's duplicated n-gram rules rightly drop.
    left = {"topic": list(ex.rules["s"]), "common": list(_rules(lang, None)["s"])}
    for pool in left.values():
        rng.shuffle(pool)
    out: list[str] = []
    words = sentences = 0
    while (words < target_words or sentences < MIN_SENTENCES) and (left["topic"] or left["common"]):
        para: list[str] = []
        joined = False
        for _ in range(rng.randint(3, 6)):
            which = "topic" if rng.random() < TOPIC_SENTENCE_SHARE else "common"
            if not left[which]:
                which = "common" if which == "topic" else "topic"
            if not left[which]:
                break
            s = ex.sentence(left[which].pop())
            question = s.endswith("?")
            if para and not joined and para[-1].endswith(".") and not question and rng.random() < JOIN_RATE:
                s = f"{_conjunction(lang, s)} {s}"
                para[-1] = f"{para[-1][:-1]} {s}"
                joined = True  # two clauses at most: no "a and b and c" chains
            else:
                joined = False
                if conn and not question and rng.random() < CONNECTIVE_RATE:
                    s = f"{rng.choice(conn)} {s}"
                para.append(_capitalize(s))
                sentences += 1
            words += len(s.split())
            if words >= target_words and sentences >= MIN_SENTENCES:
                break
        out.append(" ".join(para))
    return out


def _conjunction(lang: str, following: str) -> str:
    """The language's "and" before `following` (Spanish writes "e" before an /i/ sound)."""
    if lang == "es" and following.lower().startswith(("i", "hi")) and not following.lower().startswith("hie"):
        return "e"
    return _AND[lang]


class _Page:
    """A page being built: optional title line, paragraphs, and its expander."""

    def __init__(self, rng: random.Random, lang: str, target_words: int | None = None):
        topic = rng.choice(TOPICS)
        self.ex = _Expander(rng, lang, topic)
        self.title = _capitalize(self.ex.sentence(rng.choice(self.ex.rules["title"]))) \
            if rng.random() < TITLE_RATE else None
        self.paras = _prose(rng, self.ex, lang, target_words or rng.randint(MIN_WORDS, MAX_WORDS))

    def text(self) -> str:
        return "\n\n".join(([self.title] if self.title else []) + self.paras)


def _passkey_text(rng: random.Random, lang: str) -> tuple[str, str]:
    phrases = LANGUAGE_MODULES[lang].PASSKEY
    passkey = str(rng.randint(10000, 99999))
    page = _Page(rng, lang, target_words=rng.randint(150, 350))
    page.paras[0] = f"{phrases['intro'].format(passkey=passkey)} {page.paras[0]}"
    page.paras.append(f"{phrases['question']} {phrases['answer'].format(passkey=passkey)}")
    return page.text(), passkey


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


_MAIL = {
    "en": ("gmail.com", "outlook.com", "btinternet.com"), "fr": ("orange.fr", "free.fr", "laposte.net"),
    "es": ("gmail.com", "hotmail.es", "telefonica.net"), "de": ("gmx.de", "web.de", "t-online.de"),
    "it": ("libero.it", "gmail.com", "tiscali.it"), "pt": ("sapo.pt", "gmail.com", "clix.pt"),
}


def _email(rng: random.Random, lang: str, ex: _Expander) -> str:
    first, last = _ascii(ex.expand("{name}")), _ascii(ex.expand("{surname}"))
    user = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first}_{last}", f"{first}{rng.randint(1, 99)}"))
    sites = [s.removeprefix("www.") for s in LANGUAGE_MODULES[lang].SITES]
    return f"{user}@{rng.choice(_MAIL[lang] + tuple(sites))}"


def _public_ip(rng: random.Random) -> str:
    while True:
        ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        if ipaddress.ip_address(ip).is_global:
            return ip


def _private_ip(rng: random.Random) -> str:
    return rng.choice((
        f"192.168.{rng.randint(0, 9)}.{rng.randint(2, 254)}",
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
    ))


def _pii_text(rng: random.Random, lang: str) -> str:
    page = _Page(rng, lang)
    ex = page.ex
    templates = LANGUAGE_MODULES[lang].PII
    with_email = [t for t in templates if "{email}" in t]
    with_ip = [t for t in templates if "{ip}" in t]
    chosen = [rng.choice(with_email), rng.choice(with_ip)]
    if rng.random() < 0.5:
        chosen.append(rng.choice(templates))
    for t in chosen:
        s = t.replace("{email}", _email(rng, lang, ex)).replace("{ip}", _public_ip(rng))
        s = _capitalize(ex.sentence(s.replace("{private_ip}", _private_ip(rng))))
        i = rng.randrange(len(page.paras))
        page.paras[i] = f"{page.paras[i]} {s}"
    return page.text()


def _boilerplate_text(rng: random.Random, lang: str, site: str) -> str:
    bp = LANGUAGE_MODULES[lang].BOILERPLATE
    body = _Page(rng, lang).text()
    year = str(rng.randint(2015, 2024))

    def fill(line: str) -> str:
        return line.replace("{year}", year).replace("{site}", site)

    top = rng.sample(bp["nav"], rng.randint(1, 2))
    if rng.random() < 0.7:
        top.append(rng.choice(bp["cookie"]))
    bottom = rng.sample(bp["share"], rng.randint(1, 2)) + rng.sample(bp["footer"], rng.randint(1, 2))
    return "\n".join(fill(x) for x in top) + "\n" + body + "\n" + "\n".join(fill(x) for x in bottom)


def _spam_text(rng: random.Random, lang: str) -> str:
    spam = LANGUAGE_MODULES[lang].SPAM
    phrases, keywords = spam["phrases"], _alternatives(spam["keywords"])
    style = rng.choice(("repeated_lines", "keyword_stuffing", "hashtags"))
    if style == "repeated_lines":
        lines = [_capitalize(p) + "!" for p in rng.sample(phrases, rng.randint(2, 4))]
        out = lines * rng.randint(6, 12)
        rng.shuffle(out)
        return "\n".join(out)
    if style == "keyword_stuffing":
        core = " ".join(rng.sample(keywords, 2))
        words: list[str] = []
        while len(words) < rng.randint(80, 200):
            words += core.split() + [rng.choice(keywords)]
        lines = [" ".join(words[i:i + 20]) for i in range(0, len(words), 20)]
        return _capitalize(rng.choice(phrases)) + "\n" + "\n".join(lines)
    tags = [f"#{_ascii(k)}" for k in keywords]
    lines = []
    for _ in range(rng.randint(6, 12)):
        lines.append(_capitalize(rng.choice(phrases)) + " " + " ".join(rng.sample(tags, rng.randint(4, 8))))
    return "\n".join(lines)


def _foreign_text(rng: random.Random, flang: str) -> str:
    ex = _Expander(rng, flang, None)
    sentences = ex.rules["s"]
    paras = []
    for _ in range(rng.randint(2, 4)):
        picked = rng.sample(sentences, rng.randint(3, 5))
        paras.append(" ".join(_capitalize(ex.sentence(s)) for s in picked))
    return "\n\n".join(paras)


# ----------------------------------------------------------------------------- duplicates

def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def _exact_dup(rng: random.Random, text: str) -> str:
    if rng.random() < 0.5:
        return text
    # Whitespace-only changes: the same page as served by a different template.
    return text.replace("\n\n", "\n\n\n").replace(". ", ".  ", 1) + "\n"


def _near_dup(rng: random.Random, text: str, lang: str) -> str:
    """Edit words / add a sentence until the shingle Jaccard is in NEAR_DUP_JACCARD."""
    lo, hi = NEAR_DUP_JACCARD
    original = _shingles(text)
    vocabulary = [w for w in _WORD.findall(_Page(rng, lang, target_words=60).text()) if w.isalpha()]
    best = text
    for _attempt in range(20):
        tokens = re.split(r"(\s+)", text)
        candidate = text
        for _edit in range(40):
            op = rng.random()
            if op < 0.7:  # replace one word by another word of the language
                idx = [i for i, t in enumerate(tokens) if t.strip() and t.isalpha()]
                i = rng.choice(idx)
                tokens[i] = rng.choice(vocabulary)
            else:  # append a sentence to a paragraph, as an updated page would
                extra = _capitalize(" ".join(rng.sample(vocabulary, min(len(vocabulary), rng.randint(6, 12))))) + "."
                paras = "".join(tokens).split("\n\n")
                j = rng.randrange(len(paras))
                paras[j] = f"{paras[j]} {extra}"
                tokens = re.split(r"(\s+)", "\n\n".join(paras))
            candidate = "".join(tokens)
            j = _jaccard(original, _shingles(candidate))
            if j <= hi:
                break
        if lo <= j <= hi:
            return candidate
        best = candidate
    return best


# ----------------------------------------------------------------------------- the corpus

def _kind_schedule(num_docs: int, rng: random.Random) -> list[str]:
    kinds: list[str] = []
    for kind, share in DEFECT_MIX.items():
        kinds += [kind] * round(share * num_docs)
    kinds += ["clean"] * (num_docs - len(kinds))
    rng.shuffle(kinds)
    return kinds[:num_docs]


def generate(num_docs: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield `num_docs` page records, deterministic in `seed`."""
    rng = random.Random(seed)
    kinds = _kind_schedule(num_docs, rng)
    langs = [LANGUAGES[i % len(LANGUAGES)] for i in range(num_docs)]
    rng.shuffle(langs)
    originals: dict[str, list[dict[str, Any]]] = {lang: [] for lang in LANGUAGES}
    foreign_langs = sorted(FOREIGN)
    for i, (kind, lang) in enumerate(zip(kinds, langs)):
        doc_id = f"web-{i:06d}"
        site = rng.choice(LANGUAGE_MODULES[lang].SITES)
        meta: dict[str, Any] = {"lang": lang, "kind": kind}
        if kind in ("exact_dup", "near_dup") and not originals[lang]:
            kind = meta["kind"] = "clean"  # nothing to copy yet
        if kind in ("clean", "passkey", "pii", "boilerplate"):
            if kind == "passkey":
                text, meta["passkey"] = _passkey_text(rng, lang)
            elif kind == "pii":
                text = _pii_text(rng, lang)
            elif kind == "boilerplate":
                text = _boilerplate_text(rng, lang, site)
            else:
                text = _Page(rng, lang).text()
        elif kind in ("exact_dup", "near_dup"):
            orig = rng.choice(originals[lang])
            meta["dup_of"] = orig["id"]
            text = _exact_dup(rng, orig["text"]) if kind == "exact_dup" else _near_dup(rng, orig["text"], lang)
            site = "mirror." + orig["url"].split("/")[2].removeprefix("www.")
        elif kind == "spam":
            text = _spam_text(rng, lang)
        else:  # foreign
            lang = meta["lang"] = rng.choice(foreign_langs)
            site = rng.choice(FOREIGN_SITES[lang])
            text = _foreign_text(rng, lang)
        record = {"id": doc_id, "url": f"https://{site}/{rng.choice(TOPICS)}/{i:06d}", "text": text, "meta": meta}
        if kind in ("clean", "pii"):
            originals[lang].append(record)
        yield record


def write_sample(out: str | Path, num_docs: int = 2400, seed: int = 1234) -> Path:
    """Write the sample corpus as JSONL (atomically); returns the path."""
    if num_docs < 1:
        raise ValueError(f"num_docs must be >= 1, got {num_docs}")
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for rec in generate(num_docs, seed):
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    return out
