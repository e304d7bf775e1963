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
participle agreeing with a preceding direct object (les pommes qu'il a vues).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from course_lib.corpus_grammar import (  # noqa: F401  (re-exported: the grammar's public helpers)
    NEEDS_CUE,
    SENSE_OF,
    TOPIC_CUES,
    Grammar,
    Sentence,
    contract,
    decidable,
    elide,
    noun_phrase,
)
from course_lib.corpus_lexicon import AMBIGUOUS, SENSE_TOPIC, TOPICS

if TYPE_CHECKING:
    from course_lib.text import Vocab

def generate_sentences(num_sentences: int, seed: int = 0) -> list[Sentence]:
    """Draw distinct sentences (by English text), in documents of one topic each.

    Sentences whose ambiguous words cannot be decided from their own words are redrawn,
    and an English sentence drawn with two different translations is dropped entirely.
    """
    if num_sentences < 1:
        raise ValueError(f"num_sentences must be >= 1, got {num_sentences}")
    rng = random.Random(seed)
    grammar = Grammar(rng)
    by_en: dict[tuple[str, ...], Sentence] = {}
    conflicts: set[tuple[str, ...]] = set()
    attempts = 0
    while len(by_en) < num_sentences and attempts < 20 * num_sentences:
        topic = rng.choice(TOPICS)
        for _ in range(rng.randint(3, 6)):  # a document: a run of sentences on one topic
            attempts += 1
            s = grammar.sentence(topic)
            if not decidable(s) or s.en in conflicts:
                continue
            if s.en in by_en and by_en[s.en].fr != s.fr:
                conflicts.add(s.en)
                del by_en[s.en]
                continue
            by_en.setdefault(s.en, s)
    return list(by_en.values())[:num_sentences]


@dataclass
class Splits:
    train: list[Sentence]
    valid: list[Sentence]
    test: list[Sentence]
    test_novel: list[Sentence]  # every sentence uses an adjective-noun pair never seen in training
    novel_pairs: frozenset[tuple[str, str]]


def split_sentences(sentences: list[Sentence], seed: int = 0, valid: float = 0.1, test: float = 0.1,
                    novel_pairs: float = 0.06) -> Splits:
    """Shuffle and split; sentences with held-out adjective-noun pairs go to test_novel only."""
    rng = random.Random(seed + 1)
    pairs = sorted({p for s in sentences for p in s.adj_nouns})
    held = frozenset(rng.sample(pairs, max(1, int(novel_pairs * len(pairs))))) if pairs else frozenset()
    novel = [s for s in sentences if held & set(s.adj_nouns)]
    rest = [s for s in sentences if not held & set(s.adj_nouns)]
    rng.shuffle(rest)
    n_valid, n_test = int(valid * len(rest)), int(test * len(rest))
    return Splits(rest[n_valid + n_test:], rest[:n_valid], rest[n_valid:n_valid + n_test], novel, held)


def documents(sentences: list[Sentence]) -> list[list[Sentence]]:
    """Consecutive sentences of the same topic, as generated: the documents for next-sentence prediction."""
    docs: list[list[Sentence]] = []
    for s in sentences:
        if docs and docs[-1][0].topic == s.topic and len(docs[-1]) < 6:
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

    def _loader(self, dataset, split: str, batch_size: int, shuffle: bool | None):
        from course_lib.text import loader

        return loader(dataset, batch_size, split == "train" if shuffle is None else shuffle, self.seed)

    def loader(self, split: str, batch_size: int, shuffle: bool | None = None):
        """Translation batches (src, src_valid_len, tgt, tgt_valid_len); shuffled for train by default."""
        from course_lib.text import TranslationDataset

        pairs = [(s.en, s.fr) for s in self.split(split)]
        return self._loader(TranslationDataset(pairs, self.src_vocab, self.tgt_vocab), split, batch_size, shuffle)

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

    def probes(self, word: str, split: str = "test") -> dict[str, list[tuple[Sentence, str]]]:
        """The sentences of a split that contain an ambiguous word, by sense."""
        return probe_set(self.split(split), word)

    def probe_sets(self, per_sense: int = 20) -> dict[str, dict[str, list[tuple[Sentence, str]]]]:
        """Ready-made probes: for each ambiguous word and sense, ``per_sense`` new sentences.

        The sentences are drawn fresh (from a seed of their own), are decidable, and none
        appears in the training split. Returns word -> sense -> [(sentence, French word)].
        """
        train = {s.en for s in self.train}
        rng = random.Random(self.seed + 7919)
        grammar = Grammar(rng)
        wanted = {(w, sense) for w, senses in AMBIGUOUS.items() for sense in senses}
        found: dict[tuple[str, str], dict[tuple[str, ...], Sentence]] = {k: {} for k in wanted}
        for _ in range(400 * per_sense):
            missing = [k for k in sorted(wanted) if len(found[k]) < per_sense]
            if not missing:
                break
            word, sense = missing[rng.randrange(len(missing))]
            s = grammar.sentence(SENSE_TOPIC.get(sense, rng.choice(TOPICS)))  # the draw is always made
            if s.en in train or not decidable(s):
                continue
            for _, w, sn in s.senses:
                if (w, sn) in found and len(found[(w, sn)]) < per_sense:
                    found[(w, sn)].setdefault(s.en, s)
        return {
            w: {sense: [(s, AMBIGUOUS[w][sense]) for s in found[(w, sense)].values()] for sense in senses}
            for w, senses in AMBIGUOUS.items()
        }


def load_corpus(num_sentences: int = 8000, seed: int = 0, min_freq: int = 1) -> Corpus:
    """Generate the corpus (about a second for the default size) and build its vocabularies.

    The default size lets a small attention translation model train on a 2-core CPU in
    about a minute. Vocabularies are built from the training split only, so test words
    never seen in training map to ``<unk>``.
    """
    from course_lib.text import Vocab

    splits = split_sentences(generate_sentences(num_sentences, seed), seed)
    src_vocab = Vocab((t for s in splits.train for t in s.en), min_freq)
    tgt_vocab = Vocab((t for s in splits.train for t in s.fr), min_freq)
    tag_vocab = Vocab((t for s in splits.train for t in s.tags), reserved_tokens=["<unk>"])
    return Corpus(splits, src_vocab, tgt_vocab, tag_vocab, TOPICS, seed)
