"""trafilatura's discard selectors, evaluated in Python: the same elements, without XPath's callbacks.

    from smoledge.data.discard_rules import install
    install()                      # once per process, before trafilatura.extract
    # trafilatura.extract(...) now returns the same text, ~40% sooner

Why: trafilatura prunes boilerplate with XPath 1.0 selectors whose tests are
EXSLT `re:test`. libxml2 runs `re:test` by calling back into Python for every
candidate element and every attribute tested, so on the shared HTML pages
(106 real pages, ~740 elements each) these nine selectors were 43% of
extraction: 13 of 30 ms a page under instrumentation, and extraction is
~60% of curate's work per page. With the rules: 19.4 -> 11.7 ms a page. Here each selector is one pass over the
tree's elements (lxml's C iterator picks the tags), with the same tests in
Python's `re`, which is what `re:test` calls anyway.

Exactness: each Rule is a transcription of one of trafilatura's XPath
expressions and replaces it only where that expression's text (whitespace
collapsed) has the sha256 recorded here. A trafilatura whose selectors
changed keeps its own XPath for the changed ones: slower, never different.
tests/test_discard_rules.py checks every rule against libxml2 on every page of
../shared/data/html and on randomly generated elements that reach each
branch, and checks trafilatura's extracted text is unchanged.

XPath semantics carried over: `.//*` is the descendant elements, not the
context node, in document order; an absent attribute is the empty string;
`@id|@class` as a string is the attribute that comes first in the element's
markup; `not(.//h1)` is "no h1 below". `.//header` (one of trafilatura's
selectors) has no `re:test` and stays XPath.

What this does not do: it leaves trafilatura's other XPath (the content
selectors, metadata) and its fallback extractors (readability, jusText) as
they are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from lxml import etree

# The tags trafilatura's block-level discard rules look at (its converted tree: list/item for ul/li).
BLOCKS = ("div", "item", "list", "p", "section", "span")
COMMENT_BLOCKS = ("div", "list", "section", "details")
RAW_BLOCKS = ("div", "section", "aside")


# Distinct attribute values a memo keeps verdicts for; it starts over when full.
MEMO_VALUES = 1 << 16


def _attr(el: Any, name: str) -> str:
    value = el.get(name)
    return "" if value is None else value


class _Memo:
    """`pattern.search(value) is not None`, remembered per value: a page repeats its class names and
    ids, and a site its templates' (the long alternations here cost ~1 us a search, a lookup ~0.1)."""

    __slots__ = ("_search", "_seen")

    def __init__(self, pattern: re.Pattern[str]):
        self._search = pattern.search
        self._seen: dict[str, bool] = {}

    def __call__(self, value: str) -> bool:
        seen = self._seen
        hit = seen.get(value)
        if hit is None:
            if len(seen) >= MEMO_VALUES:
                seen.clear()
            hit = seen[value] = self._search(value) is not None
        return hit


def _first(el: Any, a: str, b: str) -> str:
    """The string value of `@a|@b`: the one of the two attributes written first in the element."""
    va, vb = el.get(a), el.get(b)
    if va is None:
        return "" if vb is None else vb
    if vb is None:
        return va
    keys = el.keys()
    return va if keys.index(a) < keys.index(b) else vb


# ----------------------------------------------------------------------------- the tests, one per rule

_NAV_ID = _Memo(re.compile(r"^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|"
                     r"^(?:jp-|dpsp-content)|bmdh|footer|Footer|share|Share|nav|Nav|menu|related|message-container|"
                     r"premium|^ad-"))
_NAV_CLASS = _Memo(re.compile(r"^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|"
                        r"^(?:nav|post-nav|ZendeskForm)|subnav|avigation|navbar|navbox|menu|bar| ad |-ad-|(?:^| )ad-|"
                        r"dfp[Aa]d|outbrain|taboola|criteo|paid-?content|widget|footer|Footer|byline|Byline|share-|"
                        r"sociable|embedded|embed|tag-list|consent|modal-content|permission|elated|next-|-stories|"
                        r"most-popular|more-on|meta|rating|attachment|timestamp|user-info|user-profile|-icon|"
                        r"article-infos|message-container|slide|viewport|overlay|options|expand|obfuscated|blurred|"
                        r"mol-factbox|yin|zlylin|nfoline"))


def _navigation(el: Any) -> bool:
    """OVERALL_DISCARD_XPATH[0]: navigation, sharing, cookie banners, ads, bylines."""
    get = el.get
    role = get("role")
    if (get("data-lp-replacement-content") is not None or (role is not None and "nav" in role.replace("N", "n"))
            or "MostPopularStories" in _attr(el, "data-component")):
        return True
    ident, cls = get("id"), get("class")
    if ident is None and cls is None:
        return False
    return "cookie" in _first(el, "id", "class") or _NAV_ID(ident or "") or _NAV_CLASS(cls or "")


_HIDDEN_ID = re.compile(r"reader-comments|akismet")
_HIDDEN_CLASS = _Memo(re.compile(r"^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|"
                                 r"-hide-|hide-print| hidden| hide|noprint|notloaded"))


def _hidden(el: Any) -> bool:
    """OVERALL_DISCARD_XPATH[1]: hidden elements, comment titles and replies."""
    get = el.get
    ident, cls, style = get("id"), get("class"), get("style")
    if ident is None and cls is None and style is None:
        return get("aria-hidden") == "true"
    style = style or ""
    return bool(cls == "comments-title" or _first(el, "id", "class").startswith("reply-")
                or "hidden" in _first(el, "id", "style") or "display:none" in style or "display: none" in style
                or _HIDDEN_ID.search(ident or "") or _HIDDEN_CLASS(cls or "")
                or get("aria-hidden") == "true")


_COMMENTS_ID = re.compile(r"^(?:[Cc]omment(?!ary)|comol|disqus_thread|dsq-comments)")
_COMMENTS_CLASS = re.compile(r"^[Cc]omment(?!ary)|(?:article|post)-comments")
_COMMENT_LIST_ID = re.compile(r"^(?:[Cc]omment(?!ary)|comol)")


def _comments(el: Any) -> bool:
    """REMOVE_COMMENTS_XPATH[0]: comment sections."""
    return bool(_COMMENTS_ID.search(_attr(el, "id")) or _COMMENTS_CLASS.search(_attr(el, "class")))


def _comments_and_lists(el: Any) -> bool:
    """REMOVE_COMMENTS_AND_LISTS_XPATH[0]: comment sections, and ol/ul only when named as comments."""
    if not _comments(el):
        return False
    return bool(el.tag not in ("ol", "ul") or _COMMENT_LIST_ID.search(_attr(el, "id"))
                or _COMMENTS_CLASS.search(_attr(el, "class")))


_ADS_OR_SCROLL = re.compile(r"mvp-post-add-(?:box|wrap)|infinite-?scroll")
_ADS = re.compile(r"mvp-post-add-(?:box|wrap)")


def _ads_and_infinite_scroll(el: Any) -> bool:
    """RAW_TREE_PRUNE_XPATH[0]: in-post ad boxes, and infinite-scroll blocks without a title in them."""
    ident, cls = _attr(el, "id"), _attr(el, "class")
    if not (_ADS_OR_SCROLL.search(ident) or _ADS_OR_SCROLL.search(cls)):
        return False
    return bool(next(el.iterdescendants("h1"), None) is None or _ADS.search(ident) or _ADS.search(cls))


def _share_buttons(el: Any) -> bool:
    """RAW_TREE_PRUNE_XPATH[1]."""
    return "elementor-share-buttons" in _attr(el, "class")


_BOTTOM = re.compile(r"(^|\s)bottom|bottom(\s|$)")
_LINK = re.compile(r"(^|\s)link(\s|$)")


def _bottom_and_links(el: Any) -> bool:
    """PRECISION_DISCARD_XPATH[1]: page-bottom blocks, link blocks, bordered boxes."""
    named = _first(el, "id", "class")
    return bool(_BOTTOM.search(named) or _LINK.search(named) or "border" in _attr(el, "style"))


def _teasers(el: Any) -> bool:
    """TEASER_DISCARD_XPATH[0]."""
    return "teaser" in _attr(el, "id").replace("T", "t") or "teaser" in _attr(el, "class").replace("T", "t")


def _captions(el: Any) -> bool:
    """DISCARD_IMAGE_ELEMENTS[0]."""
    return "caption" in _attr(el, "id") or "caption" in _attr(el, "class")


# ----------------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Rule:
    """One of trafilatura's XPath selectors: `rule(tree)` is `XPath(tree)`, the same elements in the same order."""

    where: str  # trafilatura.xpaths list and index
    digest: str  # sha256 (first 16 hex) of the XPath text it transcribes, whitespace collapsed
    tags: tuple[str, ...] | None  # what `self::a or self::b` allows; None: every element
    test: Callable[[Any], bool]

    def __call__(self, tree: Any) -> list[Any]:
        elements = tree.iterdescendants(*self.tags) if self.tags else tree.iterdescendants(etree.Element)
        test = self.test
        return [el for el in elements if test(el)]


RULES = (
    Rule("OVERALL_DISCARD_XPATH[0]", "d9e4b7d7125b4838", BLOCKS, _navigation),
    Rule("OVERALL_DISCARD_XPATH[1]", "9abb7217d588fd5a", None, _hidden),
    Rule("REMOVE_COMMENTS_AND_LISTS_XPATH[0]", "ec1083e558ae70c0", COMMENT_BLOCKS + ("ol", "ul"), _comments_and_lists),
    Rule("REMOVE_COMMENTS_XPATH[0]", "853775ab53d61b26", COMMENT_BLOCKS, _comments),
    Rule("RAW_TREE_PRUNE_XPATH[0]", "77023cff86242dc8", RAW_BLOCKS, _ads_and_infinite_scroll),
    Rule("RAW_TREE_PRUNE_XPATH[1]", "3c7afe92279543d5", RAW_BLOCKS, _share_buttons),
    Rule("PRECISION_DISCARD_XPATH[1]", "e73d179956bb857e", BLOCKS, _bottom_and_links),
    Rule("TEASER_DISCARD_XPATH[0]", "50f9c0568a62e759", BLOCKS, _teasers),
    Rule("DISCARD_IMAGE_ELEMENTS[0]", "271b5ef29bbc5bf0", BLOCKS, _captions),
)


def digest(xpath_text: str) -> str:
    return hashlib.sha256(" ".join(xpath_text.split()).encode()).hexdigest()[:16]


def _slot(where: str) -> tuple[list | None, int]:
    """trafilatura's selector list that `where` names (None when this trafilatura has no such list), and the index."""
    import trafilatura.xpaths

    name, index = where.rstrip("]").split("[")
    selectors = getattr(trafilatura.xpaths, name, None)
    return (selectors if isinstance(selectors, list) else None), int(index)


def _current(rule: Rule) -> Any:
    selectors, index = _slot(rule.where)
    return selectors[index] if selectors is not None and index < len(selectors) else None


def original(rule: Rule) -> Any:
    """The XPath `rule` stands for, installed or not (None when trafilatura has no such selector)."""
    current = _current(rule)
    return current.xpath if isinstance(current, _Installed) else current


@dataclass(frozen=True)
class _Installed:
    """A rule in trafilatura's list, keeping the XPath it replaced."""

    rule: Rule
    xpath: Any

    def __call__(self, tree: Any) -> list[Any]:
        return self.rule(tree)


def active() -> list[str]:
    """The rules in force in this process's trafilatura."""
    return [rule.where for rule in RULES if isinstance(_current(rule), _Installed)]


def install() -> list[str]:
    """Put every rule whose XPath text still matches into trafilatura's selector lists (idempotent);
    returns the rules in force.

    trafilatura's modules import those lists by name, so replacing entries in place reaches every
    caller in the process."""
    for rule in RULES:
        current = _current(rule)
        if isinstance(current, etree.XPath) and digest(current.path) == rule.digest:
            selectors, index = _slot(rule.where)
            assert selectors is not None  # it holds `current`
            selectors[index] = _Installed(rule, current)
    return active()
