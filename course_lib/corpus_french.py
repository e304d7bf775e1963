"""French morphology of the course corpus: elision, contraction, agreement, determiners.

Small functions of a word and its neighbours, used by ``course_lib.corpus_grammar`` to
build phrases (and re-exported there and by ``course_lib.corpus``); tested in
tests/test_corpus.py.
"""

from __future__ import annotations

from course_lib.corpus_lexicon import Adjective, Noun, Verb, starts_with_vowel


def elide(word: str, following: str) -> str:
    """le/la -> l', je -> j', ne -> n', que -> qu', de -> d' before a vowel or mute h."""
    if word in ("le", "la", "je", "ne", "que", "de") and starts_with_vowel(following):
        return word[:-1] + "'"
    return word


def contract(preposition: str, article: str) -> list[str]:
    """à + le -> au, à + les -> aux, de + le -> du, de + les -> des; otherwise unchanged."""
    table = {("à", "le"): "au", ("à", "les"): "aux", ("de", "le"): "du", ("de", "les"): "des"}
    return [table[(preposition, article)]] if (preposition, article) in table else [preposition, article]


def adjective_form(adj: Adjective, gender: str, plural: bool) -> str:
    return adj.fr[(2 if plural else 0) + (1 if gender == "f" else 0)]


def participle(verb: Verb, agree_with: Noun | None = None, plural: bool = False) -> str:
    """Past participle; agrees with a direct object placed before the auxiliary."""
    form = verb.participle
    if agree_with is not None:
        form += ("e" if agree_with.gender == "f" else "") + ("s" if plural else "")
    return form


def determiner(kind: str, noun: Noun, plural: bool, negated: bool) -> str:
    """The French article or possessive before a noun phrase (elision applied later)."""
    if kind == "generic":  # a bare plural used generically: cats eat fish -> les chats mangent
        return "les"
    if kind == "def":
        return "les" if plural else ("la" if noun.gender == "f" else "le")
    if kind == "poss":
        return "mes" if plural else ("ma" if noun.gender == "f" else "mon")
    if negated:  # ne ... pas de: the indefinite article becomes "de"
        return "de"
    return "des" if plural else ("une" if noun.gender == "f" else "un")


def finish_determiner(det: str, following: str) -> str:
    if det == "ma" and starts_with_vowel(following):
        return "mon"  # mon amie, mon orange
    return elide(det, following)
