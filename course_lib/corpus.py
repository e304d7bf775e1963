"""The course corpus: a small synthetic English–French world that makes attention visible.

``generate_corpus(num_sentences, seed)`` draws sentences from a grammar over the lexicon
in ``course_lib.corpus_lexicon``. Each :class:`Sentence` has English tokens, their French
translation, a part-of-speech tag per English token (Universal POS tags), a topic, the
senses of its ambiguous words, and the adjective–noun pairs it uses. Everything is
lower-case, so "apple" the company and "apple" the fruit look the same; the article (or
its absence) and the topic's words decide.

French rules implemented (and tested in tests/test_corpus.py): gender and number
agreement of articles, possessives and adjectives; most adjectives after the noun, a few
(petit, grand, bon, joli) before it; elision (l', j', n', qu', d') and contraction (du,
des, au, aux); "des" becoming "de" before a preceding adjective; "pas de" after a
negation; subject–verb agreement; the perfect with "avoir" (a vu) and its past
participle agreeing with a preceding direct object (les pommes qu'il a vues); a bare
plural subject read generically (cats eat fish: les chats mangent des poissons); a place
phrase at the end or fronted (près de la rive , le pêcheur ...).

Every French choice can be read from the English: "the fish" is one fish and "fish"
several; professions, whose English names carry no gender, take the generic masculine.
Verbs take sensible subjects and objects (a knife cuts bread, nobody carries a cow),
adjectives sensible nouns (a sharp knife, not a sharp drill), places sensible
prepositions (in the kitchen, near the lake, on the bank).

Sentences are generated as documents of 3 to 6 sentences on one topic
(``generate_documents``); the splits keep documents whole and in order, so that
neighbouring sentences of the training split are real neighbours.

The grammar is in ``course_lib.corpus_grammar``, the cue probes of chapter 6
(``cue_probes``: is an ambiguous word decided before it or only after?) in
``course_lib.corpus_probes``; both are re-exported here.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from course_lib.corpus_grammar import (  # noqa: F401  (re-exported: the grammar's public helpers)
    NEEDS_CUE,
    SENSE_OF,
    TOPIC_CUES,
    Grammar,
    Impossible,
    Sentence,
    SteeredGrammar,
    contract,
    decidable,
    elide,
    noun_phrase,
)
from course_lib._checks import check_int
from course_lib.corpus_lexicon import AMBIGUOUS, SENSE_TOPIC, TOPICS
from course_lib.corpus_probes import (  # noqa: F401  (re-exported: the cue probes)
    CUE_COLUMNS,
    CUE_WORDS,
    NO_CUE_PROBES,
    STALL_DRAWS,
    CueProbe,
    cue_probes,
    find_witness,
)

if TYPE_CHECKING:
    from course_lib.text import Vocab

def generate_documents(num_sentences: int, seed: int = 0) -> list[list[Sentence]]:
    """Draw documents of 3 to 6 distinct sentences on one topic each, ``num_sentences`` in all.

    Every sentence is new (by its English text) and decidable: a draw that repeats an
    earlier sentence, or whose ambiguous words the other words cannot decide, is redrawn,
    so every document keeps the length it was drawn with (the last one may be cut short
    to reach ``num_sentences``). Each sentence records its document's index in ``doc``.
    """
    check_int("num_sentences", num_sentences)
    rng = random.Random(seed)
    grammar = Grammar(rng)
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    docs: list[list[Sentence]] = []
    total = 0
    while total < num_sentences:
        topic = rng.choice(TOPICS)
        length = min(rng.randint(3, 6), num_sentences - total)
        doc: list[Sentence] = []
        for _ in range(100 * length):
            if len(doc) == length:
                break
            s = grammar.sentence(topic)
            if s.en in seen:
                if seen[s.en] != s.fr:  # the grammar must give one translation per English sentence
                    raise RuntimeError(f"two translations of {' '.join(s.en)!r}: "
                                       f"{' '.join(seen[s.en])!r} and {' '.join(s.fr)!r}")
                continue
            if not decidable(s):
                continue
            seen[s.en] = s.fr
            doc.append(replace(s, doc=len(docs)))
        if len(doc) < length:
            raise RuntimeError(f"could not draw {length} new sentences about {topic!r}: the grammar is exhausted")
        docs.append(doc)
        total += length
    return docs


def generate_sentences(num_sentences: int, seed: int = 0) -> list[Sentence]:
    """The sentences of ``generate_documents(num_sentences, seed)``, document after document."""
    return [s for doc in generate_documents(num_sentences, seed) for s in doc]


@dataclass
class Splits:
    train: list[Sentence]
    valid: list[Sentence]
    test: list[Sentence]
    test_novel: list[Sentence]  # every sentence uses an adjective-noun pair never seen in training
    novel_pairs: frozenset[tuple[str, str]]


def split_sentences(sentences: list[Sentence], seed: int = 0, valid: float = 0.1, test: float = 0.1,
                    novel_pairs: float = 0.06) -> Splits:
    """Split by document, so that a document's sentences stay together and in order.

    Whole documents go to valid (about ``valid`` of the sentences), test (about ``test``)
    and train (the rest). Then every sentence that uses one of the held-out adjective–noun
    pairs (``novel_pairs`` of all pairs) leaves its split for ``test_novel``; its document
    keeps its other sentences, in order.
    """
    for name, frac in (("valid", valid), ("test", test), ("novel_pairs", novel_pairs)):
        if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 <= frac < 1:
            raise ValueError(f"{name} must be a fraction in [0, 1), got {frac!r}")
    if valid + test >= 1:
        raise ValueError(f"valid + test must be below 1 (the rest is the training split), got {valid} + {test}")
    rng = random.Random(seed + 1)
    pairs = sorted({p for s in sentences for p in s.adj_nouns})
    held = frozenset(rng.sample(pairs, max(1, int(novel_pairs * len(pairs))))) if pairs else frozenset()
    docs = documents(sentences)
    rng.shuffle(docs)
    parts: dict[str, list[Sentence]] = {"valid": [], "test": [], "train": []}
    quota = {"valid": valid * len(sentences), "test": test * len(sentences)}
    for doc in docs:
        name = next((k for k in ("valid", "test") if len(parts[k]) < quota[k]), "train")
        parts[name] += doc
    novel = [s for name in ("train", "valid", "test") for s in parts[name] if held & set(s.adj_nouns)]
    keep = {name: [s for s in part if not held & set(s.adj_nouns)] for name, part in parts.items()}
    return Splits(keep["train"], keep["valid"], keep["test"], novel, held)


def documents(sentences: list[Sentence]) -> list[list[Sentence]]:
    """Group consecutive sentences of the same document (``Sentence.doc``), in order.

    Sentences drawn alone (``doc == -1``) are documents of one sentence.
    """
    docs: list[list[Sentence]] = []
    for s in sentences:
        if docs and s.doc >= 0 and docs[-1][-1].doc == s.doc:
            docs[-1].append(s)
        else:
            docs.append([s])
    return docs


def probe_set(sentences: list[Sentence], word: str) -> dict[str, list[tuple[Sentence, str]]]:
    """For an ambiguous word: sense -> [(sentence, the French word that translates it)]."""
    if word not in AMBIGUOUS:
        raise ValueError(f"{word!r} is not one of the ambiguous words {sorted(AMBIGUOUS)}")
    out: dict[str, list[tuple[Sentence, str]]] = {sense: [] for sense in AMBIGUOUS[word]}
    for s in sentences:
        for _, w, sense in s.senses:
            if w == word:
                out[sense].append((s, AMBIGUOUS[word][sense]))
    return out


def statistics(sentences: list[Sentence]) -> dict[str, object]:
    """Counts for the appendix: sizes, vocabularies, lengths, topics, ambiguous senses."""
    senses = Counter((w, s) for x in sentences for _, w, s in x.senses)
    return {
        "sentences": len(sentences),
        "english_vocabulary": len({t for s in sentences for t in s.en}),
        "french_vocabulary": len({t for s in sentences for t in s.fr}),
        "english_lengths": Counter(len(s.en) for s in sentences),
        "french_lengths": Counter(len(s.fr) for s in sentences),
        "topics": Counter(s.topic for s in sentences),
        "ambiguous_senses": dict(sorted(senses.items())),
    }


@dataclass
class Corpus:
    """The course corpus, ready for the chapters: splits, vocabularies and loaders.

    ``corpus = load_corpus()`` is all a chapter needs. ``corpus.loader("train", 64)``
    gives translation batches (src, src_valid_len, tgt, tgt_valid_len);
    ``tagging_loader`` and ``topic_loader`` give batches for sequence labeling and
    classification; ``probes(word)`` the probe set of an ambiguous word (test split).
    """

    splits: Splits
    src_vocab: Vocab
    tgt_vocab: Vocab
    tag_vocab: Vocab
    topics: tuple[str, ...]
    seed: int

    def split(self, name: str) -> list[Sentence]:
        if name not in ("train", "valid", "test", "test_novel"):
            raise ValueError(f"unknown split {name!r}; expected train, valid, test or test_novel")
        return getattr(self.splits, name)

    @property
    def train(self) -> list[Sentence]:
        return self.splits.train

    @property
    def valid(self) -> list[Sentence]:
        return self.splits.valid

    @property
    def test(self) -> list[Sentence]:
        return self.splits.test

    @property
    def test_novel(self) -> list[Sentence]:
        return self.splits.test_novel

    def _loader(self, dataset, split: str, batch_size: int, shuffle: bool | None, by_length: bool = False):
        from course_lib.text import loader

        return loader(dataset, batch_size, split == "train" if shuffle is None else shuffle, self.seed, by_length)

    def loader(self, split: str, batch_size: int, shuffle: bool | None = None, by_length: bool = False):
        """Translation batches (src, src_valid_len, tgt, tgt_valid_len); shuffled for train by default.

        ``by_length=True`` puts sentences of similar length in the same batch (shuffled
        loaders only; see ``course_lib.text.LengthGroupedBatches``): less padding, so a
        recurrent decoder, which runs one step per padded target position, trains faster.
        """
        from course_lib.text import TranslationDataset

        pairs = [(s.en, s.fr) for s in self.split(split)]
        return self._loader(TranslationDataset(pairs, self.src_vocab, self.tgt_vocab), split, batch_size, shuffle,
                            by_length)

    def tagging_loader(self, split: str, batch_size: int, shuffle: bool | None = None):
        """Part-of-speech batches (tokens, valid_len, tags)."""
        from course_lib.text import TaggingDataset

        pairs = [(s.en, s.tags) for s in self.split(split)]
        return self._loader(TaggingDataset(pairs, self.src_vocab, self.tag_vocab), split, batch_size, shuffle)

    def topic_loader(self, split: str, batch_size: int, shuffle: bool | None = None):
        """Topic classification batches (tokens, valid_len, topic index)."""
        from course_lib.text import ClassificationDataset

        pairs = [(s.en, self.topics.index(s.topic)) for s in self.split(split)]
        return self._loader(ClassificationDataset(pairs, self.src_vocab), split, batch_size, shuffle)

    def documents(self, split: str) -> list[list[Sentence]]:
        """The documents of a split, each a list of consecutive sentences on one topic."""
        return documents(self.split(split))

    def probes(self, word: str, split: str = "test") -> dict[str, list[tuple[Sentence, str]]]:
        """The sentences of a split that contain an ambiguous word, by sense."""
        return probe_set(self.split(split), word)

    def probe_sets(self, per_sense: int = 20) -> dict[str, dict[str, list[tuple[Sentence, str]]]]:
        """Ready-made probes: for each ambiguous word and sense, ``per_sense`` new sentences.

        The sentences are drawn fresh (from a seed of their own), are decidable, and none
        appears in the training split. Returns word -> sense -> [(sentence, French word)].
        Raises ``RuntimeError`` if the grammar cannot give ``per_sense`` such sentences for
        every sense (found when ``STALL_DRAWS`` draws in a row bring none that is new)
        rather than returning fewer.
        """
        check_int("per_sense", per_sense)
        train = {s.en for s in self.train}
        rng = random.Random(self.seed + 7919)
        grammar = Grammar(rng)
        wanted = {(w, sense) for w, senses in AMBIGUOUS.items() for sense in senses}
        found: dict[tuple[str, str], dict[tuple[str, ...], Sentence]] = {k: {} for k in wanted}
        since_new = 0
        for _ in range(400 * per_sense):
            missing = [k for k in sorted(wanted) if len(found[k]) < per_sense]
            if not missing or since_new == STALL_DRAWS:
                break
            word, sense = missing[rng.randrange(len(missing))]
            s = grammar.sentence(SENSE_TOPIC.get(sense, rng.choice(TOPICS)))  # the draw is always made
            since_new += 1
            if s.en in train or not decidable(s):
                continue
            for _, w, sn in s.senses:
                if (w, sn) in found and len(found[(w, sn)]) < per_sense and s.en not in found[(w, sn)]:
                    found[(w, sn)][s.en] = s
                    since_new = 0
        short = {k: len(v) for k, v in sorted(found.items()) if len(v) < per_sense}
        if short:
            raise RuntimeError(f"probe_sets: only {', '.join(f'{n} for {w} ({sn})' for (w, sn), n in short.items())} "
                               f"of the {per_sense} new sentences asked per sense: the grammar offers no more (or very "
                               f"few) outside the training split; ask for fewer")
        return {
            w: {sense: [(s, AMBIGUOUS[w][sense]) for s in found[(w, sense)].values()] for sense in senses}
            for w, senses in AMBIGUOUS.items()
        }

    def cue_probes(self, per_cell: int = 60) -> dict[str, dict[str, dict[str, list[CueProbe]]]]:
        """Probes with the deciding cue before the ambiguous word, or only after it.

        word -> sense -> column ("before", "only after") -> ``per_cell`` :class:`CueProbe`
        (sentence, French word, cue position, word position, witness), for bank, bat and
        light; none is in the training split. See :func:`course_lib.corpus.cue_probes`.
        """
        return cue_probes(self.train, per_cell, self.seed)


def load_corpus(num_sentences: int = 8000, seed: int = 0, min_freq: int = 1) -> Corpus:
    """Generate the corpus (about a second for the default size) and build its vocabularies.

    The default size lets a small attention translation model train on a 2-core CPU in
    about a minute. Vocabularies are built from the training split only, so test words
    never seen in training map to ``<unk>``.

    The validation and test splits take whole documents (3 to 6 sentences) first, so a
    tiny corpus can leave a split empty: that raises a ValueError (about 20 sentences
    are enough for every seed tried).
    """
    from course_lib.text import Vocab

    check_int("num_sentences", num_sentences)
    check_int("seed", seed, minimum=None)
    splits = split_sentences(generate_sentences(num_sentences, seed), seed)
    empty = [name for name in ("train", "valid", "test") if not getattr(splits, name)]
    if empty:
        raise ValueError(f"load_corpus(num_sentences={num_sentences}, seed={seed}) leaves the {' and '.join(empty)} "
                         f"split(s) empty (validation and test take whole documents of 3 to 6 sentences first); "
                         "use num_sentences >= 20 (the default is 8000)")
    src_vocab = Vocab((t for s in splits.train for t in s.en), min_freq)
    tgt_vocab = Vocab((t for s in splits.train for t in s.fr), min_freq)
    tag_vocab = Vocab((t for s in splits.train for t in s.tags), reserved_tokens=["<unk>"])
    return Corpus(splits, src_vocab, tgt_vocab, tag_vocab, TOPICS, seed)
