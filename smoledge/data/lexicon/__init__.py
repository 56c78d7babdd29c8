"""Per-language grammars of the built-in sample corpus (smoledge.data.sample).

One module per language holds plain data, nothing else:

  COMMON       rules shared by every topic (people, cities, dates, generic sentences)
  TOPICS       {topic: rules}; each topic has `title` and `s` (sentence templates)
  PASSKEY      the passkey phrases (stated early, asked and answered late)
  PII          sentences carrying an e-mail address or an IP address
  BOILERPLATE  navigation / cookie / share / footer lines a web page wraps text in
  SPAM         phrases that spam pages repeat
  SITES        domains for the synthetic URLs

A rule maps a name to alternatives: a list of templates, or one string of
alternatives separated by "|". Templates reference rules as {name}; {@name}
is bound once per document (the same city or dish all along). Numbers come
from builtins in smoledge.data.sample ({n2_9}, {year}, {clock}, {price}...).
Sentence templates start in lower case unless they start with a proper noun:
the generator capitalizes after optionally prefixing a connective ({conn}).
"""

from smoledge.data.lexicon import de, en, es, foreign, fr, it, pt

LANGUAGE_MODULES = {"en": en, "fr": fr, "es": es, "de": de, "it": it, "pt": pt}
FOREIGN = foreign.LANGUAGES
