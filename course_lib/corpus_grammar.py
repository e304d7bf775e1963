"""The grammar of the course corpus: phrases and whole sentences.

Used by ``course_lib.corpus``, which draws, filters and splits the sentences. The rules
are listed in that module's docstring and tested in tests/test_corpus.py; the French
morphology they use (elision, contraction, agreement) is ``course_lib.corpus_french``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from course_lib.corpus_french import (  # noqa: F401  (re-exported: the French morphology)
    adjective_form,
    contract,
    determiner,
    elide,
    finish_determiner,
    participle,
)
from course_lib.corpus_lexicon import (
    ADJECTIVES,
    COMPANY,
    DRAW_WEIGHT,
    NOUNS,
    PLACE_PREPOSITIONS,
    PLACES,
    PREPOSITIONS,
    PRONOUNS,
    SENSE_TOPIC,
    TOPICS,
    VERBS,
    Adjective,
    Noun,
    Verb,
)


# Which sense of an ambiguous word each lexicon entry is.
SENSE_OF = {
    "apple/fruit": ("apple", "fruit"), "apple/company": ("apple", "company"),
    "saw/tool": ("saw", "tool"), "see/past": ("saw", "see"),
    "bank/money": ("bank", "money"), "bank/river": ("bank", "river"),
    "bat/animal": ("bat", "animal"), "bat/sports": ("bat", "sports"),
    "watch/time": ("watch", "time"), "watch/look": ("watch", "look"),
    "light/lamp": ("light", "lamp"), "light": ("light", "weight"),
}
# Nouns whose sense only the sentence's topic words can decide (the others: syntax).
NEEDS_CUE = {"bank/money", "bank/river", "bat/animal", "bat/sports"}


@dataclass(frozen=True)
class Sentence:
    en: tuple[str, ...]
    fr: tuple[str, ...]
    tags: tuple[str, ...]  # one Universal POS tag per English token
    topic: str
    senses: tuple[tuple[int, str, str], ...] = ()  # (English position, word, sense)
    adj_nouns: tuple[tuple[str, str], ...] = ()  # (adjective, noun key) pairs
    nouns: tuple[tuple[int, str, bool], ...] = ()  # (English position, noun key, plural) of every noun
    doc: int = -1  # the document it was generated in (-1: drawn alone, e.g. a probe sentence)

    def __post_init__(self) -> None:
        if len(self.en) != len(self.tags):
            raise ValueError(f"{len(self.en)} English tokens but {len(self.tags)} tags: {self.en}")


@dataclass
class _Phrase:
    en: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    fr: list[str] = field(default_factory=list)
    senses: list[tuple[int, str, str]] = field(default_factory=list)  # positions relative to en
    adj_nouns: list[tuple[str, str]] = field(default_factory=list)
    nouns: list[tuple[int, str, bool]] = field(default_factory=list)  # positions relative to en

    def add(self, other: _Phrase) -> _Phrase:
        offset = len(self.en)
        self.en += other.en
        self.tags += other.tags
        self.fr += other.fr
        self.senses += [(i + offset, w, s) for i, w, s in other.senses]
        self.adj_nouns += other.adj_nouns
        self.nouns += [(i + offset, k, pl) for i, k, pl in other.nouns]
        return self

    def noun(self, noun: Noun, en: str, tag: str, plural: bool) -> _Phrase:
        self.nouns.append((len(self.en), noun.key, plural))
        return self.word(en, tag, key=noun.key)

    def word(self, en: str, tag: str, fr: list[str] | tuple[str, ...] = (), key: str | None = None) -> _Phrase:
        if key in SENSE_OF:
            self.senses.append((len(self.en), *SENSE_OF[key]))
        self.en.append(en)
        self.tags.append(tag)
        self.fr += list(fr)
        return self


# --- phrases -----------------------------------------------------------------------


def noun_phrase(
    noun: Noun, plural: bool, kind: str, pre: Adjective | None = None, post: Adjective | None = None,
    negated: bool = False,
) -> _Phrase:
    """A noun phrase in both languages. kind: def (the), indef (a / bare plural), poss (my),
    generic (a bare plural subject: "cats eat fish", French "les chats")."""
    if kind == "generic" and not plural:
        raise ValueError("a generic noun phrase is a bare plural: plural=True is needed")
    p = _Phrase()
    if noun.cls == "company":
        p.noun(noun, noun.en, "PROPN", False)
        p.fr = [noun.fr]
        return p
    en_adjs = [a.en for a in (pre, post) if a is not None]
    en_noun = noun.en_pl if plural else noun.en
    if kind == "def":
        p.word("the", "DET")
    elif kind == "poss":
        p.word("my", "DET")
    elif not plural:
        first = (en_adjs + [en_noun])[0]
        p.word("an" if first[0] in "aeio" else "a", "DET")
    for a in (pre, post):
        if a is not None:
            p.word(a.en, "ADJ", key=a.en)
            p.adj_nouns.append((a.en, noun.key))
    p.noun(noun, en_noun, "NOUN", plural)
    fr = [adjective_form(pre, noun.gender, plural)] if pre else []
    fr.append(noun.fr_pl if plural else noun.fr)
    if post:
        fr.append(adjective_form(post, noun.gender, plural))
    det = determiner(kind, noun, plural, negated and kind == "indef")
    if det == "des" and pre is not None:
        det = "de"  # de petits chats, not des petits chats
    p.fr = [finish_determiner(det, fr[0]), *fr]
    return p


def place_phrase(rng: random.Random, topic: str) -> _Phrase:
    """near the lake / at the market / on the bank: a preposition that fits the place."""
    return Grammar(rng).place_phrase(topic)


def _with_preposition(preposition: str, noun: Noun) -> list[str]:
    """French preposition + definite article + noun, with contraction: au, du, près de la."""
    words = preposition.split()  # "près de" -> ["près", "de"]
    article = finish_determiner(determiner("def", noun, False, False), noun.fr)
    if words[-1] in ("à", "de") and article in ("le", "les"):
        return words[:-1] + contract(words[-1], article) + [noun.fr]
    return words + [article, noun.fr]


def verb_forms(verb: Verb, person: int, negated: bool, third_singular: bool) -> tuple[list[str], list[str], list[str]]:
    """English tokens, their tags, French tokens of the verb group (without the object)."""
    if verb.past:
        en = ["did", "not", verb.en] if negated else ["saw"]
        tags = ["AUX", "PART", "VERB"] if negated else ["VERB"]
        aux = verb.fr[person]
        fr = (["ne", aux, "pas"] if negated else [aux]) + [verb.participle]
    else:
        if negated:
            en = ["does" if third_singular else "do", "not", verb.en]
            tags = ["AUX", "PART", "VERB"]
        else:
            en, tags = [verb.en_3sg if third_singular else verb.en], ["VERB"]
        fr = ["ne", verb.fr[person], "pas"] if negated else [verb.fr[person]]
    if fr[0] == "ne":
        fr[0] = elide("ne", fr[1])
    return en, tags, fr


def _candidates(topic: str, classes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[Noun]:
    """Nouns of the topic that fit a verb's role: by semantic class or by noun key."""
    found = [n for n in NOUNS if (n.cls in classes or n.key in classes) and topic in n.topics and n.key not in exclude]
    if "company" in classes and topic == "technology":
        found.append(COMPANY)
    return found


def _verb_key(verb: Verb, word: str) -> str | None:
    """The sense key to record for an English verb token: the ambiguous "saw" and "watch"."""
    if word == "saw" or (verb.key == "watch/look" and word.startswith("watch")):
        return verb.key
    return None


class Grammar:
    """Draws one sentence at a time; all randomness comes from the given Random.

    Every random decision goes through one of three *choice points*, each named after
    its role in the sentence: ``_random(name)`` (a float in [0, 1), compared with a
    probability), ``_choice(name, options)`` and ``_weighted(name, options, weights)``.
    The names: "verb", "negated", "place" (is there a place phrase), "place.noun",
    "place.preposition", "place.fronted"; for the subject ("subject"), the object
    ("object") and the phrases of relative clauses ("subject.relative.object",
    "object.relative.subject", ...), ROLE.pronoun, ROLE.pronoun_word, ROLE.noun,
    ROLE.plural, ROLE.adjectives (are there any), ROLE.layout, ROLE.pre and ROLE.post
    (the adjectives placed before and after the noun in French; both precede it in
    English), ROLE.kind (determiner); "subject.relative" and "object.relative" (is there
    a relative clause), and in a clause ROLE.head_is_subject and ROLE.verb.
    Each makes exactly one call to the Random, the same one whatever the name, so the
    names change nothing in what is drawn. They let :class:`SteeredGrammar` fix some
    decisions in advance and record all of them (the cue probes of ``course_lib.corpus``).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # --- the choice points ----------------------------------------------------------

    def _random(self, name: str) -> float:
        return self.rng.random()

    def _choice(self, name: str, options: Sequence):
        return self.rng.choice(options)

    def _weighted(self, name: str, options: Sequence, weights: Sequence[float]):
        return self.rng.choices(options, weights)[0]

    def _draw(self, name: str, nouns: list[Noun]) -> Noun:
        return self._weighted(name, nouns, [DRAW_WEIGHT.get(n.key, 1.0) for n in nouns])

    # --- phrases --------------------------------------------------------------------

    def adjectives(self, role: str, noun: Noun, p_adj: float) -> tuple[Adjective | None, Adjective | None]:
        """Up to two adjectives that fit the noun: one placed before it in French, one after."""
        if noun.cls in ("company", "place") or self._random(f"{role}.adjectives") > p_adj:
            return None, None
        fitting = [a for a in ADJECTIVES if (noun.cls in a.classes or noun.key in a.classes)
                   and a.en != noun.en]  # no "a light light"
        pre = [a for a in fitting if a.before]
        post = [a for a in fitting if not a.before]
        layout = self._random(f"{role}.layout")
        a_pre = self._choice(f"{role}.pre", pre) if pre and layout < 0.45 else None
        a_post = self._choice(f"{role}.post", post) if post and (layout >= 0.3 or a_pre is None) else None
        return a_pre, a_post

    def place_phrase(self, topic: str) -> _Phrase:
        """near the lake / at the market / on the bank: a preposition that fits the place."""
        places = [pl for pl in PLACES if topic in pl.topics]
        place = self._draw("place.noun", places)
        prep_en = self._choice("place.preposition", PLACE_PREPOSITIONS[place.key])
        p = _Phrase().word(prep_en, "ADP")
        p.word("the", "DET").noun(place, place.en, "NOUN", False)
        p.fr = _with_preposition(PREPOSITIONS[prep_en], place)
        return p

    def subject(self, topic: str, verb: Verb, role: str = "subject") -> tuple[_Phrase, int, bool, Noun | None]:
        """Subject phrase, person index (0 je, 1 il, 2 nous, 3 ils), English 3rd singular, noun."""
        if "person" in verb.subjects and self._random(f"{role}.pronoun") < 0.2:
            en, fr, person = self._choice(f"{role}.pronoun_word", PRONOUNS)
            return _Phrase().word(en, "PRON", [fr]), person, person == 1, None
        noun = self._draw(f"{role}.noun", _candidates(topic, verb.subjects))
        plural = noun.cls != "company" and self._random(f"{role}.plural") < 0.3
        pre, post = self.adjectives(role, noun, 0.3)
        # no "my" with people: "ma femme", "mon homme" read as "my wife", "my husband"
        kind = self._weighted(f"{role}.kind", ["def", "indef", "poss"], [6, 2, 0 if noun.cls == "person" else 1])
        if noun.invariant and kind != "indef":
            plural = False  # "the fish": only "a fish" / "fish" show the number
        if kind == "indef" and plural:
            kind = "generic"  # "cats eat fish": les chats, not des chats
        return noun_phrase(noun, plural, kind, pre, post), 3 if plural else 1, not plural, noun

    def object(self, topic: str, verb: Verb, negated: bool, role: str = "object") -> tuple[_Phrase, Noun, bool]:
        noun = self._draw(f"{role}.noun", _candidates(topic, verb.objects, verb.exclude))
        plural = noun.cls != "company" and self._random(f"{role}.plural") < 0.35
        pre, post = self.adjectives(role, noun, 0.45)
        # "aimer" takes the definite article for what one likes (j'aime les pommes), also negated;
        # a negated person is a definite one ("ne regarde pas l'homme", not "pas d'homme")
        indef = 0 if verb.key == "like" or (negated and noun.cls == "person") else 4
        kind = self._weighted(f"{role}.kind", ["def", "indef", "poss"], [5, indef, 0 if noun.cls == "person" else 1])
        if noun.invariant and kind != "indef":
            plural = False  # "the fish": only "a fish" / "fish" show the number
        return noun_phrase(noun, plural, kind, pre, post, negated), noun, plural

    def relative_clause(self, topic: str, head: Noun, head_plural: bool, role: str) -> _Phrase | None:
        """'that cuts the bread' (head is the subject) or 'that the woman buys' (head is the object)."""
        def fits(slot: tuple[str, ...], exclude: tuple[str, ...] = ()) -> bool:
            return (head.cls in slot or head.key in slot) and head.key not in exclude

        as_subject = [v for v in VERBS if fits(v.subjects) and _candidates(topic, v.objects, v.exclude)]
        as_object = [v for v in VERBS if fits(v.objects, v.exclude) and _candidates(topic, v.subjects)]
        if as_subject and (not as_object or self._random(f"{role}.head_is_subject") < 0.5):
            verb = self._choice(f"{role}.verb", as_subject)
            p = _Phrase().word("who" if head.cls == "person" else "that", "PRON", ["qui"])
            en, tags, fr = verb_forms(verb, 3 if head_plural else 1, False, not head_plural)
            for w, t in zip(en, tags):
                p.word(w, t, key=_verb_key(verb, w))
            p.fr += fr
            obj, _, _ = self.object(topic, verb, False, f"{role}.object")
            return p.add(obj)
        if not as_object:
            return None
        verb = self._choice(f"{role}.verb", as_object)
        p = _Phrase().word("that", "PRON")
        subj, person, third, _ = self.subject(topic, verb, f"{role}.subject")
        p.add(subj)
        en, tags, fr = verb_forms(verb, person, False, third)
        if verb.past:  # the object (the head) comes before "avoir": the participle agrees
            fr[-1] = participle(verb, head, head_plural)
        for w, t in zip(en, tags):
            p.word(w, t, key=_verb_key(verb, w))
        subj_fr = [elide("je", fr[0])] if subj.fr == ["je"] else list(subj.fr)  # que j'ai vue
        p.fr = [elide("que", subj_fr[0]), *subj_fr, *fr]
        return p

    def sentence(self, topic: str) -> Sentence:
        verbs = [v for v in VERBS if _candidates(topic, v.subjects) and _candidates(topic, v.objects, v.exclude)]
        verb = self._choice("verb", verbs)
        s, person, third, subj_noun = self.subject(topic, verb)
        if subj_noun is not None and subj_noun.cls != "company" and self._random("subject.relative") < 0.15:
            rel = self.relative_clause(topic, subj_noun, person == 3, "subject.relative")  # the man who eats apples ...
            if rel is not None:
                s.add(rel)
        negated = self._random("negated") < 0.2
        en, tags, fr = verb_forms(verb, person, negated, third)
        if s.fr == ["je"]:
            s.fr[-1] = elide("je", fr[0])  # j'aime, j'ai; but je n'aime pas
        v = _Phrase()
        for w, t in zip(en, tags):
            v.word(w, t, key=_verb_key(verb, w))
        v.fr = fr
        obj, obj_noun, obj_plural = self.object(topic, verb, negated)
        s.add(v).add(obj)
        # no relative clause after "pas de": a clause makes the object specific (pas le casque que ...)
        if obj_noun.cls != "company" and obj.fr[0] not in ("de", "d'") and self._random("object.relative") < 0.25:
            rel = self.relative_clause(topic, obj_noun, obj_plural, "object.relative")
            if rel is not None:
                s.add(rel)
        if self._random("place") < 0.35:
            place = self.place_phrase(topic)
            if self._random("place.fronted") < 0.4:  # fronted: "near the bank , the fisherman ..." (the cue comes after)
                s = place.word(",", "PUNCT", [","]).add(s)
            else:
                s.add(place)
        s.word(".", "PUNCT", ["."])
        return Sentence(tuple(s.en), tuple(s.fr), tuple(s.tags), topic, tuple(s.senses), tuple(s.adj_nouns),
                        tuple(s.nouns))


class Impossible(Exception):
    """A decision forced on a :class:`SteeredGrammar` that the grammar does not offer there."""


class SteeredGrammar(Grammar):
    """A :class:`Grammar` with some decisions fixed in advance; it records all of them.

    ``forced`` maps choice-point names (see :class:`Grammar`) to the value to take there:
    one of the options offered (compared by equality), or a float in [0, 1) for a
    ``_random`` choice point. A forced value must be one the plain grammar could draw at
    that point: an option offered with a positive weight, or any float in [0, 1) (each
    comparison with a probability in (0, 1) can go both ways). Otherwise the draw stops
    with :class:`Impossible`. So every sentence a SteeredGrammar makes is one that
    ``Grammar(rng).sentence(topic)`` makes with a positive probability: steering changes
    how likely a sentence is, never whether the grammar can produce it.

    The other decisions are drawn from ``rng`` as usual. After ``sentence(topic)``,
    ``trace`` maps the name of every choice point reached to the value taken there, and
    ``unused`` lists the forced names that were never reached.
    """

    def __init__(self, rng: random.Random, forced: dict[str, object] | None = None) -> None:
        super().__init__(rng)
        self.forced = dict(forced or {})
        self.trace: dict[str, object] = {}

    def sentence(self, topic: str) -> Sentence:
        self.trace = {}
        return super().sentence(topic)

    @property
    def unused(self) -> list[str]:
        return sorted(set(self.forced) - set(self.trace))

    def _record(self, name: str, value):
        if name in self.trace:
            raise RuntimeError(f"choice point {name!r} reached twice in one sentence")
        self.trace[name] = value
        return value

    def _random(self, name: str) -> float:
        if name not in self.forced:
            return self._record(name, super()._random(name))
        value = self.forced[name]
        if not isinstance(value, float) or not 0.0 <= value < 1.0:
            raise Impossible(f"{name}: {value!r} is not a float in [0, 1)")
        return self._record(name, value)

    def _choice(self, name: str, options: Sequence):
        if name not in self.forced:
            return self._record(name, super()._choice(name, options))
        value = self.forced[name]
        if value not in options:
            raise Impossible(f"{name}: {_label(value)} is not among the {len(options)} options here")
        return self._record(name, value)

    def _weighted(self, name: str, options: Sequence, weights: Sequence[float]):
        if name not in self.forced:
            return self._record(name, super()._weighted(name, options, weights))
        value = self.forced[name]
        if not any(o == value and w > 0 for o, w in zip(options, weights)):
            raise Impossible(f"{name}: {_label(value)} is not among the options of positive weight here")
        return self._record(name, value)


def _label(value: object) -> str:
    key = getattr(value, "key", None) or getattr(value, "en", None)
    return repr(key if key is not None else value)


def _topic_cues() -> dict[str, set[str]]:
    """English words that occur in exactly one topic's nouns and places: they reveal the topic."""
    seen: dict[str, set[str]] = {}
    for n in (*NOUNS, *PLACES):
        if n.key in NEEDS_CUE:
            continue
        for w in (n.en, n.en_pl):
            seen.setdefault(w, set()).update(n.topics)
    cues: dict[str, set[str]] = {t: set() for t in TOPICS}
    for w, topics in seen.items():
        if len(topics) == 1:
            cues[next(iter(topics))].add(w)
    cues["sports"] |= {"hit", "hits"}
    cues["animals"] |= {"feed", "feeds", "wild"}
    return cues


TOPIC_CUES = _topic_cues()


def decidable(sentence: Sentence) -> bool:
    """Can a reader tell each ambiguous noun's sense from the other words of the sentence?"""
    words = set(sentence.en)
    for i, word, sense in sentence.senses:
        key = f"{word}/{sense}"
        if key in NEEDS_CUE:
            topic = SENSE_TOPIC[sense]
            if not (words - {word}) & TOPIC_CUES[topic]:
                return False
    return True
