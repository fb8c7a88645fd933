"""The RediSearch full-text query for what a reader typed: its words, never its syntax.

The index splits title, author and description into words at whitespace and ASCII
punctuation, lower-cases them and leaves out stopwords. A reader's text is split the same way,
so each word of the query is a word the index can hold ("Ender's" searches ``ender`` and
``s``, as the title was indexed). The words are OR-ed: BM25 ranks a book that matches more of
them, and rarer ones, higher, the title's words three times the others (the index weights the
field).

No word is written into the query string: each goes to Redis as a query parameter, so the
string is only ``($w0|$w1|...)`` whatever the reader typed. Escaping would not be enough: a
plain word can be syntax too (``ismissing`` is a function of the 2.10 query language, and
``(ismissing|title)`` is a syntax error however it is escaped), while a parameter is always
a term. Splitting leaves no punctuation in a word anyway (``@``, ``-``, ``|``, ``*``, ``%``,
``~``, quotes, braces, parentheses are all separators).

Stopwords are dropped here rather than left to Redis: the search module the embedded Redis
runs (RediSearch 2.10.5) crashes the server on a union that starts with two stopwords
(``(in|an|absent|dream)``, the title "In an Absent Dream": SIGSEGV in QueryNode_AddChildren,
fixed upstream by RediSearch pull request 4909). The list is the index's: RediSearch's default.

A filter or an exclusion narrows the books found exactly, but not their order alone: RediSearch
2.10 scores a union that sits inside an intersection by fewer of each book's words (RediSearch
issue 4673, open), so with a filter KEYWORD ranks as RediSearch does. HYBRID hardly depends on
it, since it only takes candidates from BM25 (measured over sampled titles: an exclusion
in the query hardly changes HYBRID's titles found first, and changes KEYWORD's a lot;
docs/decisions.md).

RedisVL's TextQuery was considered: it writes the words into the query string, splits at
whitespace only and escapes neither ``|`` nor ``_``, so "foo|bar" would become a union and
"Ender's" a word the index does not hold.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from redisvl.query import FilterQuery
from redisvl.query.filter import FilterExpression

# What RediSearch's tokenizer splits indexed text at: its default separators are the ASCII
# punctuation characters, and whitespace. A reader's text is also split at the spaces that
# are not ASCII (a no-break space, a line separator: Python's \s) and at the invisible ones a
# paste brings (the zero-width space, a byte-order mark), which would otherwise glue two words
# into one the index does not hold. Joiners stay: in Persian or Hindi they are inside words.
INVISIBLE = "\u200b\ufeff"
SEPARATORS = frozenset(string.punctuation + string.whitespace + INVISIBLE)
_SPLIT = re.compile("[" + re.escape(string.punctuation) + "\\s" + INVISIBLE + "]+")

# RediSearch's default stopword list: the books index is created without STOPWORDS.
STOPWORDS = frozenset(
    ("a", "is", "the", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in",
     "into", "it", "no", "not", "of", "on", "or", "such", "that", "their", "then", "there",
     "these", "they", "this", "to", "was", "will", "with")
)  # fmt: skip

SCORER = "BM25STD"  # Okapi BM25; RediSearch's "BM25" is a variant scaled by document score

# Words a keyword query keeps: a search box holds a title or a sentence; a 2,000-character
# paragraph would otherwise become a union of hundreds of words.
MAX_TERMS = 32


def words(text: str) -> list[str]:
    """The text's words as the index holds them, stopwords included, in order."""
    return [word.lower() for word in _SPLIT.split(text) if word]


def search_terms(text: str) -> list[str]:
    """The distinct words a keyword query searches: no stopwords, at most MAX_TERMS."""
    kept = dict.fromkeys(word for word in words(text) if word not in STOPWORDS)
    return list(kept)[:MAX_TERMS]


@dataclass(frozen=True, slots=True)
class KeywordQuery:
    """A union of the text's words: the query string names parameters, ``params`` holds the
    words."""

    text: str
    params: dict[str, str]


def keyword_query(text: str) -> KeywordQuery | None:
    """The union of the text's words over every TEXT field (dialect 2); None when the text
    holds no word to search (only stopwords or punctuation)."""
    terms = search_terms(text)
    if not terms:
        return None
    params = {f"w{n}": term for n, term in enumerate(terms)}
    return KeywordQuery("(" + "|".join(f"${name}" for name in params) + ")", params)


def keyword_search(
    text: str,
    filters: Sequence[FilterExpression | None],
    num_results: int,
    return_fields: list[str],
) -> FilterQuery | None:
    """The BM25 search for the text among the books the filters let through, best first
    (each hit with its score); None when the text has no word to search."""
    found = keyword_query(text)
    if found is None:
        return None
    clauses = [found.text, *(str(f) for f in filters if f is not None)]
    query = FilterQuery(
        filter_expression=" ".join(clauses),
        return_fields=return_fields,
        num_results=num_results,
        params=found.params,
    )
    query.scorer(SCORER)
    query.with_scores()
    return query
