"""Cue probes of the course corpus: where the word that decides an ambiguous word's sense sits.

:func:`cue_probes` draws, for "bank", "bat" and "light" (:data:`CUE_WORDS`) and each of
their senses, new sentences in two columns (:data:`CUE_COLUMNS`): the sense is decided
by a cue *before* the word, or nothing before the word decides it and the cue comes
*only after* (proved by a witness, :func:`find_witness`: a sentence the grammar can
generate with the same words before the word and the other sense). Chapter 6 uses them
to ask whether a model that reads only leftwards can know the sense. They are drawn with
``course_lib.corpus_grammar.SteeredGrammar`` over ``course_lib.corpus_lexicon``;
``course_lib.corpus`` re-exports every name (``Corpus.cue_probes`` calls them).
"""

from __future__ import annotations

import random
from typing import NamedTuple

from course_lib.corpus_grammar import TOPIC_CUES, Impossible, Sentence, SteeredGrammar, decidable
from course_lib.corpus_lexicon import ADJECTIVES, AMBIGUOUS, NOUNS, PLACE_PREPOSITIONS, PLACES, SENSE_TOPIC, TOPICS


#: The two columns of :func:`cue_probes`: the sense is decided by a cue *before* the
#: ambiguous word, or the words before it leave both senses open and the cue comes *only after*.
CUE_COLUMNS = ("before", "only after")

#: Why some ambiguous words, or some of their senses, have no probes in a column.
#: tests/test_corpus.py checks the rules quoted here on generated sentences.
NO_CUE_PROBES = {
    "apple": "the words before it always decide: a determiner or an adjective before 'apple' makes it the "
             "fruit, none the company (a proper noun without article); 'apples' is the fruit",
    "saw": "the word order before it decides: after a complete subject ('the girl who likes the cat') "
           "comes the verb, after a determiner, an adjective or a verb wanting its object the tool; except "
           "after 'light', itself ambiguous, at the end of a relative clause on the subject: 'the girl who "
           "likes the light saw the phone' (the verb) could also go on as '... light saw cuts the plank' (the "
           "tool). One training sentence in about 6,000 has that construction: probes of it would measure "
           "its rarity, not the position of the cue",
    "watch": "as for 'saw': the word order before it decides (a verb after a complete subject, the "
             "timepiece after a determiner, an adjective or a verb wanting its object), except for the "
             "rare 'light' at the end of a relative clause on the subject",
    ("light", "lamp", "before"): "nothing before 'light' rules out the adjective: every verb, topic and "
                                 "adjective that fits a lamp also fits a device that 'light' can describe",
}

#: The words of :func:`cue_probes`: the two nouns whose sense only topic words decide, and
#: "light", whose sense the next word decides (a noun after it makes it the adjective).
CUE_WORDS = ("bank", "bat", "light")
#: Draws in a row that bring no new probe sentence before the probe functions give up: the
#: grammar has run out. In the book's runs a new sentence comes within 200 draws at most.
STALL_DRAWS = 20_000


class CueProbe(NamedTuple):
    """One probe sentence of :func:`cue_probes`.

    ``sentence``: the probe; ``french``: the French word of the right sense
    (``AMBIGUOUS[word][sense]``); ``cue``: the position of the cue nearest to the word
    on its side (bank, bat: a word of the sense's topic; light: the verb before it, or
    the next word); ``position``: the position of the ambiguous word; ``witness``
    (column "only after" only): a sentence the grammar can generate whose words before
    ``position`` are the same and in which the word has the *other* sense, the proof
    that nothing before the word decides it.
    """

    sentence: Sentence
    french: str
    cue: int
    position: int
    witness: Sentence | None = None


_NOUN = {n.key: n for n in (*NOUNS, *PLACES)}
_LIGHT = next(a for a in ADJECTIVES if a.en == "light")


def _slot(word: str) -> str:
    """The choice point that places the ambiguous word: bank is a place, bat and light the main object."""
    return "place" if word == "bank" else "object"


def _topics(word: str, sense: str) -> tuple[str, ...]:
    """Topics in which a sentence can hold the word in that sense (the probe's topic is drawn from them)."""
    if (word, sense) == ("light", "weight"):  # the adjective: topics of the nouns it describes
        return tuple(t for t in TOPICS if any(t in n.topics for n in NOUNS if n.cls in _LIGHT.classes
                                             or n.key in _LIGHT.classes))
    return _NOUN[f"{word}/{sense}"].topics


def _forced(word: str, sense: str, column: str, rng: random.Random) -> dict[str, object]:
    """Decisions fixed in advance for a probe of this cell (SteeredGrammar; every one legal)."""
    if word == "bank":
        here, other = f"bank/{sense}", next(f"bank/{s}" for s in AMBIGUOUS["bank"] if s != sense)
        forced: dict[str, object] = {"place": 0.0, "place.noun": _NOUN[here]}
        if column == "before":
            forced["place.fronted"] = 0.99  # the place at the end: the cue comes before it
        else:  # fronted, with a preposition that the other sense also takes: "near the bank , ..."
            shared = [p for p in PLACE_PREPOSITIONS[here] if p in PLACE_PREPOSITIONS[other]]
            forced |= {"place.fronted": 0.0, "place.preposition": rng.choice(shared)}
        return forced
    forced = {"place.fronted": 0.99}  # a place phrase, if any, comes at the end
    if (word, sense) == ("light", "weight"):  # an adjective "light" on the object
        return forced | {"object.adjectives": 0.0, "object.post": _LIGHT}
    forced["object.noun"] = _NOUN[f"{word}/{sense}"]
    if word == "light":
        forced["object.plural"] = 0.99  # "lights" is the lamp by its form alone
    return forced


def _before_names(trace: dict[str, object], slot: str) -> list[str]:
    """The choice points whose words come before the ambiguous word in the sentence."""
    if slot == "place":  # a fronted place: only "prep the" comes before "bank"
        return [n for n in trace if n.startswith("place")]
    fronted = "place.fronted" in trace and trace["place.fronted"] < 0.4  # type: ignore[operator]
    return [n for n in trace if not n.startswith("object.relative")
            and (fronted or not n.startswith("place"))]


def _witness_plans(word: str, sense: str, trace: dict[str, object], topic: str) -> list[dict[str, object]]:
    """How to make the other sense at the same place: the decisions to change (each plan is tried)."""
    other = next(s for s in AMBIGUOUS[word] if s != sense)
    if word == "bank":
        return [{"place.noun": _NOUN[f"bank/{other}"]}]
    if word == "bat":
        return [{"object.noun": _NOUN[f"bat/{other}"]}]
    if other == "lamp":  # "the light box" -> "the light": the lamp, with the same adjective before it, if any
        plan: dict[str, object] = {"object.noun": _NOUN["light/lamp"], "object.plural": 0.99}
        return [plan | ({"object.layout": 0.0} if "object.pre" in trace else {"object.adjectives": 0.99})]
    if "object.post" in trace:  # "the black light": no room for a second adjective after the noun
        return []
    verb = trace["verb"]
    nouns = [n for n in NOUNS if topic in n.topics and (n.cls in _LIGHT.classes or n.key in _LIGHT.classes)
             and (n.cls in verb.objects or n.key in verb.objects) and n.key not in verb.exclude  # type: ignore[attr-defined]
             and n.key != "light/lamp"]
    layout = 0.35 if "object.pre" in trace else 0.5  # keep the adjective before it, add "light" after
    return [{"object.noun": n, "object.adjectives": 0.0, "object.layout": layout, "object.post": _LIGHT} for n in nouns]


def find_witness(sentence: Sentence, trace: dict[str, object], word: str, sense: str, position: int,
                 rng: random.Random, tries: int = 8) -> Sentence | None:
    """A sentence with the same words before ``position`` in which ``word`` has the other sense.

    ``trace`` is the SteeredGrammar trace of ``sentence``. Every decision whose words come
    before the ambiguous word is replayed, the ones that make the word are changed to
    the other sense, and the rest is drawn afresh (until the sentence is decidable), for
    each topic of the other sense. The result is a sentence the grammar generates, so it
    proves that the words before ``position`` do not decide the sense. None if no such
    sentence was found (the words before it may decide the sense).
    """
    slot = _slot(word)
    other = next(s for s in AMBIGUOUS[word] if s != sense)
    replay = {n: trace[n] for n in _before_names(trace, slot)}
    if slot == "object" and "place.fronted" not in replay:
        replay["place.fronted"] = 0.99  # a place drawn for the witness goes at the end
    for topic in _topics(word, other):
        for plan in _witness_plans(word, sense, trace, topic):
            for _ in range(tries):
                grammar = SteeredGrammar(random.Random(rng.random()), replay | plan)
                try:
                    w = grammar.sentence(topic)
                except Impossible:
                    break  # the replayed words do not fit this topic or plan
                if w.en[:position] == sentence.en[:position] and (position, word, other) in w.senses \
                        and decidable(w):
                    return w
    return None


def _cue_positions(s: Sentence, word: str, sense: str, position: int) -> list[int]:
    """Positions of the words that decide the sense: topic cues, or for "light" the word after it."""
    if word == "light":
        return [position + 1]
    return [i for i, t in enumerate(s.en) if t in TOPIC_CUES[SENSE_TOPIC[sense]] and i != position]


def _verb_rules_out_lamp(trace: dict[str, object]) -> bool:
    verb, lamp = trace["verb"], _NOUN["light/lamp"]
    return not (lamp.cls in verb.objects or lamp.key in verb.objects) or lamp.key in verb.exclude  # type: ignore[attr-defined]


def cue_probes(train: list[Sentence], per_cell: int = 60, seed: int = 0,
               max_draws: int = 1000) -> dict[str, dict[str, dict[str, list[CueProbe]]]]:
    """Probes for the position of the cue: word -> sense -> column -> [CueProbe].

    For each word of ``CUE_WORDS`` and each of its senses, ``per_cell`` new sentences
    (none in ``train``, each decidable, each with the word once) in two columns:

    * ``"before"``: a word before the ambiguous word decides its sense by a rule of the
      grammar: a topic cue (``TOPIC_CUES``: a word that only sentences of the sense's
      topic contain, as ``decidable`` uses them) for bank and bat; for "light" (the
      adjective), a verb that takes no lamp as its object ("carry the light ...");
    * ``"only after"``: nothing before the word decides it: ``find_witness`` found a
      sentence of the grammar with the same words before it and the other sense
      (returned in ``CueProbe.witness``); the cue comes after it (a topic cue; for
      "light", the next word: a noun makes it the adjective).

    bank is the place of a place phrase (at the end for "before"; fronted with a
    preposition both senses take for "only after": "near the bank , ..."); bat and light
    are on the main verb's object. Cells that cannot exist are empty (the lamp before:
    see ``NO_CUE_PROBES``). The probes are drawn with a ``SteeredGrammar`` (the place or
    the object fixed in advance), from their own random streams, one per cell, so that a
    larger ``per_cell`` keeps the smaller one's probes. Raises ``RuntimeError`` if
    ``max_draws * per_cell`` draws do not fill a cell, or ``STALL_DRAWS`` draws in a row
    bring no new probe (the grammar has no more: a large ``per_cell`` fails in seconds
    instead of running for hours).
    """
    if not isinstance(per_cell, int) or isinstance(per_cell, bool) or per_cell < 1:
        raise ValueError(f"per_cell must be an int >= 1, got {per_cell!r}")
    seen = {s.en for s in train}
    out: dict[str, dict[str, dict[str, list[CueProbe]]]] = {}
    for word in CUE_WORDS:
        out[word] = {}
        for sense, french in AMBIGUOUS[word].items():
            out[word][sense] = {}
            for column in CUE_COLUMNS:
                cell: dict[tuple[str, ...], CueProbe] = {}
                if (word, sense, column) not in NO_CUE_PROBES:
                    rng = random.Random(f"cue probes {seed} {word} {sense} {column}")
                    since_new = 0
                    for _ in range(max_draws * per_cell):
                        if len(cell) == per_cell or since_new == STALL_DRAWS:
                            break
                        probe = _draw_probe(word, sense, column, french, seen, rng)
                        since_new += 1
                        if probe is not None and probe.sentence.en not in cell:
                            cell[probe.sentence.en] = probe
                            since_new = 0
                    if len(cell) < per_cell:
                        raise RuntimeError(f"only {len(cell)} of {per_cell} probes found for {word} ({sense}), {column}"
                                           f" (the grammar offers no more, or very few: ask for fewer)")
                out[word][sense][column] = list(cell.values())
    return out


def _draw_probe(word: str, sense: str, column: str, french: str, seen: set, rng: random.Random) -> CueProbe | None:
    grammar = SteeredGrammar(random.Random(rng.random()), _forced(word, sense, column, rng))
    topic = rng.choice(_topics(word, sense))
    try:
        s = grammar.sentence(topic)
    except Impossible:
        return None
    found = [(i, sn) for i, w, sn in s.senses if w == word]
    missed = [n for n in grammar.unused if n != "place.fronted"]  # (only reached if there is a place phrase)
    if missed or s.en in seen or not decidable(s) or len(found) != 1 or found[0][1] != sense:
        return None
    position = found[0][0]
    cues = _cue_positions(s, word, sense, position)
    if column == "before":
        if word == "light":
            decided = sense == "weight" and _verb_rules_out_lamp(grammar.trace)
            verb = max(i for i in range(position) if s.tags[i] == "VERB")
            return CueProbe(s, french, verb, position) if decided else None
        before = [i for i in cues if i < position]
        return CueProbe(s, french, max(before), position) if before else None
    after = [i for i in cues if i > position]
    if not after or any(i < position for i in cues):
        return None
    witness = find_witness(s, grammar.trace, word, sense, position, rng)
    return CueProbe(s, french, min(after), position, witness) if witness is not None else None
