"""smoledge.data.discard_rules select what trafilatura's XPath selects, so extraction's text is unchanged
(and so does the element class lookup smoledge.data.extract sets on trafilatura's parser).

The rules are checked three ways: every rule is in force on the trafilatura this project pins; at
every call trafilatura makes while extracting the shared real pages, each rule returns exactly the
XPath's elements (and the extracted text is identical with and without the rules); and on random
elements built from the words each selector looks for, in every attribute order.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterator

import pytest

pytest.importorskip("trafilatura")

from lxml import html as lxml_html  # noqa: E402

from smoledge.data import discard_rules  # noqa: E402
from smoledge.data.extract import html_main_text  # noqa: E402

PAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "html" / "trafilatura"


def _pages() -> list[str]:
    paths = sorted(PAGES.glob("*.html"))
    if not paths:
        pytest.skip(f"no shared pages at {PAGES}")
    return [p.read_bytes().decode("utf-8", "replace") for p in paths]


@pytest.fixture
def put() -> Iterator[Callable[[discard_rules.Rule, object], None]]:
    """put(rule, selector) sets trafilatura's selector that `rule` stands for; all are restored after the test."""
    saved: list[tuple[list, int, object]] = []

    def _put(rule: discard_rules.Rule, selector: object) -> None:
        selectors, index = discard_rules._slot(rule.where)
        assert selectors is not None, rule.where
        saved.append((selectors, index, selectors[index]))
        selectors[index] = selector

    yield _put
    for selectors, index, value in reversed(saved):
        selectors[index] = value


def test_every_rule_is_in_force_on_the_pinned_trafilatura() -> None:
    # A trafilatura whose selectors changed keeps its XPath for them; this says which to transcribe again.
    assert discard_rules.install() == [rule.where for rule in discard_rules.RULES]
    assert discard_rules.install() == discard_rules.active()  # idempotent


def test_a_changed_selector_keeps_trafilaturas_xpath(put: Callable) -> None:
    from lxml import etree

    rule = discard_rules.RULES[0]
    changed = etree.XPath(".//*[self::div][contains(@class, 'something-else')]")
    put(rule, changed)
    assert rule.where not in discard_rules.install()
    assert discard_rules.original(rule) is changed


def test_a_trafilatura_without_a_selector_list_keeps_extracting(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura.xpaths

    monkeypatch.delattr(trafilatura.xpaths, "TEASER_DISCARD_XPATH")
    assert "TEASER_DISCARD_XPATH[0]" not in discard_rules.install()
    teaser = next(rule for rule in discard_rules.RULES if rule.where == "TEASER_DISCARD_XPATH[0]")
    assert discard_rules.original(teaser) is None
    assert "Paris" in html_main_text("<html><body><article><p>" + "Paris is the capital of France. " * 8
                                     + "</p></article></body></html>")


def test_on_real_pages_every_call_selects_the_same_elements_and_the_text_is_the_same(put: Callable) -> None:
    pages = _pages()
    discard_rules.install()
    fast = [html_main_text(page) for page in pages]

    calls: dict[str, int] = {}
    mismatches: list[str] = []
    for rule in discard_rules.RULES:
        xpath = discard_rules.original(rule)

        def both(tree: object, rule: discard_rules.Rule = rule, xpath: object = xpath) -> list:
            expected = xpath(tree)  # type: ignore[operator]
            calls[rule.where] = calls.get(rule.where, 0) + 1
            if rule(tree) != expected:
                mismatches.append(rule.where)
            return expected

        put(rule, both)
    with_xpath = [html_main_text(page) for page in pages]

    assert not mismatches
    assert set(calls) == {rule.where for rule in discard_rules.RULES}, "a rule trafilatura never called"
    assert fast == with_xpath
    assert sum(bool(text) for text in fast) > len(pages) * 0.9


def test_trafilaturas_parser_with_the_c_level_class_lookup_gives_the_same_text() -> None:
    # smoledge.data.extract sets a C-level element class lookup on trafilatura's parser; a tree parsed
    # with lxml.html's own lookup (FormElement, InputElement, ...) must extract to the same text.
    from lxml.html import HTMLParser

    from smoledge.data.extract import parse_html

    pages = _pages()
    stock = HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True,
                       remove_pis=True)
    ours = [parse_html(page) for page in pages]
    assert type(ours[0].find(".//body")).__name__ == "HtmlElement"
    trees = [lxml_html.fromstring(page.encode("utf-8", "surrogatepass"), parser=stock) for page in pages]
    assert any(type(el).__name__ != "HtmlElement" for tree in trees for el in tree.iter("form", "input", "label"))
    assert [html_main_text(tree) for tree in trees] == [html_main_text(tree) for tree in ours]


# Words the selectors look for, their near misses, and neutral ones.
WORDS = ["shar", "social", "cookie", "Cookie", "nav", "Nav", "navbar", "subnav", "menu", "footer", "Footer", "share",
         "Share", "share-", "bar", "ad", "ad-", "-ad-", "dfpAd", "dfpad", "jp-", "dpsp-content", "bread-crumb",
         "breadcrumb", "post-nav", "ZendeskForm", "meta", "embed", "related", "elated", "yin", "hidden", "hide-",
         "hide", "-hide-", "reply-", "-reply-", "comments-title", "nocomments", "akismet", "reader-comments", "message",
         "comment", "Comment", "commentary", "Commentary", "comol", "disqus_thread", "dsq-comments", "article-comments",
         "post-comments", "mvp-post-add-box", "mvp-post-add-wrap", "infinite-scroll", "infinitescroll",
         "elementor-share-buttons", "bottom", "link", "links", "teaser", "Teaser", "TEASER", "caption", "content",
         "main", "article", "x"]
STYLES = ["display:none", "display: none", "border: 1px solid", "color: red", "visibility: hidden", "margin: 0"]
TAGS = ["div", "item", "list", "p", "section", "span", "details", "ol", "ul", "aside", "header", "article", "a", "h1",
        "h2", "main"]


def _value(rng: random.Random) -> str:
    words = rng.sample(WORDS, rng.choice((1, 1, 2, 3)))
    return "".join(w + rng.choice((" ", "-", "", "_")) for w in words).strip(rng.choice(("", " ", "-")))


# (attribute, how often an element has it, its values; None: a word mix from WORDS).
ATTRIBUTES = [
    ("id", 0.5, None), ("class", 0.6, None), ("style", 0.25, STYLES),
    ("role", 0.1, ["navigation", "Navigation", "NAV", "main", "banner"]),
    ("aria-hidden", 0.1, ["true", "false", "TRUE"]),
    ("data-component", 0.05, ["MostPopularStories", "mostpopularstories", "Stories"]),
    ("data-lp-replacement-content", 0.05, ["", "1"]),
]


def _attributes(rng: random.Random) -> str:
    attrs = [f'{name}="{_value(rng) if values is None else rng.choice(values)}"'
             for name, share, values in ATTRIBUTES if rng.random() < share]
    rng.shuffle(attrs)  # `@id|@class` is whichever the markup gives first
    return " ".join(attrs)


def _element(rng: random.Random, depth: int) -> str:
    tag = rng.choice(TAGS)
    children = "".join(_element(rng, depth + 1) for _ in range(rng.randint(0, 3) if depth < 4 else 0))
    comment = "<!-- a comment -->" if rng.random() < 0.1 else ""
    return f"<{tag} {_attributes(rng)}>{comment}text {rng.randint(0, 99)}{children}</{tag}> tail "


@pytest.mark.parametrize("seed", range(5))
def test_on_random_elements_every_rule_selects_what_its_xpath_selects(seed: int) -> None:
    rng = random.Random(seed)
    page = "<html><body>" + "".join(_element(rng, 0) for _ in range(300)) + "</body></html>"
    tree = lxml_html.fromstring(page)
    for rule in discard_rules.RULES:
        expected = discard_rules.original(rule)(tree)
        assert rule(tree) == expected, rule.where
        assert expected, f"{rule.where}: the random page reaches none of its branches"
