"""The course corpus: French grammar rules, determinism, splits, ambiguity and probes."""

from __future__ import annotations

import random
import re

import pytest

from course_lib import corpus_lexicon as lex
from course_lib.corpus import (
    Sentence,
    contract,
    decidable,
    documents,
    elide,
    generate_documents,
    generate_sentences,
    load_corpus,
    noun_phrase,
    statistics,
)

NOUN = {n.key: n for n in (*lex.NOUNS, *lex.PLACES)}
ADJ = {a.en: a for a in lex.ADJECTIVES}


@pytest.fixture(scope="module")
def sentences():
    return generate_sentences(4000, seed=3)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(num_sentences=3000, seed=1)


def fr_np(key, plural=False, kind="def", pre=None, post=None, negated=False):
    return noun_phrase(NOUN[key], plural, kind, ADJ.get(pre), ADJ.get(post), negated).fr


# --- rules, one by one ------------------------------------------------------------------


def test_articles_agree_in_gender_and_number_and_elide():
    assert fr_np("cat") == ["le", "chat"] and fr_np("cow") == ["la", "vache"]
    assert fr_np("cat", plural=True) == ["les", "chats"]
    assert fr_np("computer") == ["l'", "ordinateur"] and fr_np("man") == ["l'", "homme"]  # vowel, mute h
    assert fr_np("egg", kind="indef") == ["un", "œuf"] and fr_np("orange", kind="indef") == ["une", "orange"]
    assert fr_np("orange", kind="poss") == ["mon", "orange"]  # ma -> mon before a vowel
    assert fr_np("cow", kind="poss", plural=True) == ["mes", "vaches"]


def test_adjectives_agree_and_take_their_place():
    assert fr_np("apple/fruit", post="red") == ["la", "pomme", "rouge"]
    assert fr_np("cake", plural=True, post="delicious") == ["les", "gâteaux", "délicieux"]
    assert fr_np("soup", plural=True, post="delicious") == ["les", "soupes", "délicieuses"]
    assert fr_np("box", post="white") == ["la", "boîte", "blanche"]
    assert fr_np("bat/sports", post="light") == ["la", "batte", "légère"]
    assert fr_np("cat", pre="small", post="black") == ["le", "petit", "chat", "noir"]
    assert fr_np("computer", pre="big") == ["le", "grand", "ordinateur"]  # no elision before a consonant
    assert fr_np("cow", pre="good", plural=True) == ["les", "bonnes", "vaches"]


def test_plural_indefinite_before_an_adjective_and_after_a_negation():
    assert fr_np("cat", plural=True, kind="indef") == ["des", "chats"]
    assert fr_np("cat", plural=True, kind="indef", pre="small") == ["de", "petits", "chats"]
    assert fr_np("apple/fruit", kind="indef", negated=True) == ["de", "pomme"]
    assert fr_np("orange", kind="indef", negated=True) == ["d'", "orange"]
    assert fr_np("cat", kind="def", negated=True) == ["le", "chat"]  # definite articles stay


def test_elision_and_contraction_helpers():
    assert elide("que", "il") == "qu'" and elide("ne", "aime") == "n'" and elide("je", "ai") == "j'"
    assert elide("que", "la") == "que" and elide("de", "homme") == "d'"
    assert contract("à", "le") == ["au"] and contract("de", "les") == ["des"] and contract("à", "la") == ["à", "la"]


def test_english_articles():
    assert noun_phrase(NOUN["egg"], False, "indef").en == ["an", "egg"]
    assert noun_phrase(NOUN["egg"], False, "indef", ADJ["small"]).en == ["a", "small", "egg"]
    assert noun_phrase(NOUN["egg"], True, "indef").en == ["eggs"]  # bare plural


# --- rules over the whole generated corpus ---------------------------------------------

ELIDABLE = {"le", "la", "je", "ne", "que", "de", "me", "te", "se"}


def test_no_missing_elision_or_contraction_anywhere(sentences):
    for s in sentences:
        fr = s.fr
        for a, b in zip(fr, fr[1:]):
            assert not (a in ELIDABLE and lex.starts_with_vowel(b)), f"missing elision '{a} {b}' in {' '.join(fr)}"
            assert not (a.endswith("'") and not lex.starts_with_vowel(b)), f"wrong elision '{a} {b}' in {' '.join(fr)}"
            assert (a, b) not in {("de", "le"), ("de", "les"), ("à", "le"), ("à", "les")}, " ".join(fr)
            assert not (a == "des" and b in {f for adj in lex.ADJECTIVES if adj.before for f in adj.fr}), " ".join(fr)


VERB_FORMS = {f for v in lex.VERBS for f in v.fr}


def test_subject_verb_agreement_in_the_present(sentences):
    """In sentences without relative clauses, a plural subject noun takes the ils-form, a singular the il-form."""
    plural_nouns = {n.fr_pl for n in lex.NOUNS} - {n.fr for n in lex.NOUNS}
    singular_nouns = {n.fr for n in lex.NOUNS} - {n.fr_pl for n in lex.NOUNS}
    checked = 0
    for s in sentences:
        fr = list(s.fr)
        if {"qui", "que", "qu'"} & set(fr) or fr[0] in ("je", "j'", "il", "elle", "nous", "ils", "apple"):
            continue
        verb_pos = next(i for i, t in enumerate(fr) if t in VERB_FORMS)
        subject_nouns = [t for t in fr[:verb_pos] if t in plural_nouns | singular_nouns]
        verb = fr[verb_pos]
        if subject_nouns and subject_nouns[-1] in plural_nouns:
            assert verb in {v.fr[3] for v in lex.VERBS}, " ".join(fr)
            checked += 1
        elif subject_nouns:
            assert verb in {v.fr[1] for v in lex.VERBS}, " ".join(fr)
            checked += 1
    assert checked > 500


def test_negation_and_perfect(sentences):
    for s in sentences:
        text = " ".join(s.fr)
        if "not" in s.en:
            assert re.search(r"\b(ne|n') \S+ pas\b", text), text
        if "saw" in s.en and any(w == "saw" and sense == "see" for _, w, sense in s.senses):
            assert re.search(r"\b(ai|a|avons|ont) (\S+ )?vue?s?\b", text), text


def test_participle_agrees_with_a_preceding_direct_object(sentences):
    """... N que/qu' SUBJECT a vu(e)(s): the participle agrees with N (masculine/feminine, plural)."""
    # nouns whose French number shows in their form (not "vis", "souris": the article tells those)
    nouns = {n.fr: (n.gender, False) for n in lex.NOUNS if n.fr_pl != n.fr}
    nouns |= {n.fr_pl: (n.gender, True) for n in lex.NOUNS if n.fr_pl != n.fr}
    adjectives = {f for a in lex.ADJECTIVES for f in a.fr}
    found = 0
    for s in sentences:
        fr = list(s.fr)
        for k, t in enumerate(fr):
            if t not in ("que", "qu'"):
                continue
            head = next((w for w in reversed(fr[:k]) if w not in adjectives), None)
            j = k + 1
            while j < len(fr) and fr[j] not in VERB_FORMS:
                j += 1
            if head not in nouns or j + 1 >= len(fr) or fr[j] not in ("ai", "a", "avons", "ont") or not fr[j + 1].startswith("vu"):
                continue
            gender, plural = nouns[head]
            assert fr[j + 1] == "vu" + ("e" if gender == "f" else "") + ("s" if plural else ""), " ".join(fr)
            found += 1
    assert found > 20


# --- the data set as a whole ------------------------------------------------------------


def test_deterministic_from_the_seed():
    a, b, c = generate_sentences(300, seed=7), generate_sentences(300, seed=7), generate_sentences(300, seed=8)
    assert a == b and a != c


def test_lengths_tags_topics_and_vocabulary(sentences):
    st = statistics(sentences)
    lengths = st["english_lengths"]
    assert min(lengths) <= 5 and max(lengths) >= 20
    assert all(len(s.en) == len(s.tags) for s in sentences)
    assert set(t for s in sentences for t in s.tags) <= {"DET", "NOUN", "PROPN", "VERB", "AUX", "ADJ", "ADP", "PRON", "PART", "PUNCT"}
    assert set(st["topics"]) == set(lex.TOPICS)
    words = {n.en for n in lex.NOUNS} | {n.en for n in lex.PLACES} | {a.en for a in lex.ADJECTIVES} | {v.en for v in lex.VERBS}
    assert len(words) >= 80 and st["french_vocabulary"] > 200


def test_every_ambiguous_sense_occurs_and_is_decidable(sentences):
    senses = statistics(sentences)["ambiguous_senses"]
    for word, table in lex.AMBIGUOUS.items():
        for sense in table:
            assert senses.get((word, sense), 0) >= 10, (word, sense)
    for s in sentences:
        assert decidable(s)
        for i, word, sense in s.senses:
            assert s.en[i] in (word, word + "es", word + "s") or (word == "watch" and s.en[i] == "watches")
            translations = {lex.AMBIGUOUS[word][sense]}
            translations |= {n.fr_pl for n in (*lex.NOUNS, *lex.PLACES) if n.fr in translations}  # plurals
            if (word, sense) == ("light", "weight"):
                translations = set(next(a for a in lex.ADJECTIVES if a.en == "light").fr)
            if (word, sense) == ("saw", "see"):
                translations = {"vu", "vue", "vus", "vues"}  # the participle may agree
            if (word, sense) == ("watch", "look"):
                translations = {"regarde", "regardent", "regardons"}
            fr_words = {w.split("-")[0] for w in s.fr} | set(s.fr)
            assert translations & fr_words, (word, sense, " ".join(s.fr))


def test_one_english_sentence_one_translation(sentences):
    by_en = {}
    for s in sentences:
        assert by_en.setdefault(s.en, s.fr) == s.fr


def test_splits_are_disjoint_and_novel_pairs_unseen(corpus):
    train = {s.en for s in corpus.train}
    for name in ("valid", "test", "test_novel"):
        assert not train & {s.en for s in corpus.split(name)}, name
    assert corpus.test_novel and corpus.splits.novel_pairs
    seen_pairs = {p for s in corpus.train for p in s.adj_nouns}
    assert not seen_pairs & corpus.splits.novel_pairs
    assert all(set(s.adj_nouns) & corpus.splits.novel_pairs for s in corpus.test_novel)


def test_documents_are_generated_whole_and_share_a_topic():
    docs = generate_documents(500, seed=2)
    assert sum(map(len, docs)) == 500
    assert all(len({s.topic for s in d}) == 1 and {s.doc for s in d} == {i} for i, d in enumerate(docs))
    assert all(3 <= len(d) <= 6 for d in docs[:-1])  # only the last may be cut short
    assert documents([s for d in docs for s in d]) == docs


def test_splits_keep_documents_together_and_in_order(corpus):
    generated = {s.en: (s.doc, i) for i, s in enumerate(generate_sentences(3000, seed=1))}
    owner = {}
    for name in ("train", "valid", "test"):
        for doc in corpus.documents(name):
            ids = {s.doc for s in doc}
            assert len(ids) == 1 and len({s.topic for s in doc}) == 1
            assert owner.setdefault(ids.pop(), name) == name, "a document is split across two splits"
            order = [generated[s.en][1] for s in doc]
            assert order == sorted(order), "a document's sentences are out of order"
    # test_novel takes only the sentences with a held-out pair; their documents keep the rest
    assert all(s.doc in owner or generated[s.en][0] >= 0 for s in corpus.test_novel)
    sizes = {name: len(corpus.split(name)) for name in ("train", "valid", "test")}
    assert 0.07 < sizes["valid"] / 3000 < 0.13 and 0.07 < sizes["test"] / 3000 < 0.13, sizes


# --- every target can be read from its source (one review's findings) --------------------


def _noun_phrase_context(s, i):
    """The English words of the noun phrase ending at position i: determiner, adjectives, noun."""
    j = i
    while j > 0 and s.tags[j - 1] == "ADJ":
        j -= 1
    if j > 0 and s.tags[j - 1] == "DET":
        j -= 1
    return s.en[j:i + 1]


def test_the_number_of_every_noun_can_be_read_from_the_english(sentences):
    """'the fish' is always one fish; 'fish' (bare) always several: the French number never depends
    on a choice the English does not show. The French noun agrees with that number."""
    nouns = {n.key: n for n in (*lex.NOUNS, *lex.PLACES, lex.COMPANY)}
    number_of = {}
    invariant_plurals = 0
    for s in sentences:
        assert len(s.nouns) == s.tags.count("NOUN") + s.tags.count("PROPN"), s.en
        for i, key, plural in s.nouns:
            context = _noun_phrase_context(s, i)
            assert number_of.setdefault(context, plural) == plural, f"{' '.join(context)!r} is both singular and plural"
            noun = nouns[key]
            if noun.fr != noun.fr_pl:
                assert (noun.fr_pl if plural else noun.fr) in s.fr, (key, plural, " ".join(s.fr))
            invariant_plurals += noun.invariant and plural
    assert invariant_plurals > 10  # "fish" and "sheep" still occur as plurals, where the English shows it
    assert number_of[("the", "fish")] is False and number_of[("fish",)] is True


def test_watch_is_recorded_as_an_ambiguous_verb_in_relative_clauses(sentences):
    found = 0
    for s in sentences:
        recorded = {i for i, w, _ in s.senses}
        for i, (w, t) in enumerate(zip(s.en, s.tags)):
            if w in ("watch", "watches", "saw") and t == "VERB":
                assert i in recorded, (i, " ".join(s.en))
                found += i > 0 and s.en[i - 1] in ("who", "that")
    assert found > 20


def test_natural_french_and_sensible_combinations(sentences):
    soft_food = {f"{n.fr} {f}" for n in lex.NOUNS if n.cls == "food" for f in ("doux", "douce")}
    people = {f for n in lex.NOUNS if n.cls == "person" for f in (n.fr, n.fr_pl)}
    sharp_ok = {"couteau", "couteaux", "scie", "scies"}
    for s in sentences:
        en, fr = " ".join(s.en), " ".join(s.fr)
        assert "rive de la rivière" not in fr and "lumière" not in fr and "caméra" not in fr, fr
        assert not any(x in fr for x in soft_food), fr
        assert not re.search(r"\bpas d('|e) (\S+ )?(" + "|".join(people) + r")\b", fr), fr
        assert not re.search(r"\bat the kitchen\b|\bin the (lake|river)\b|\bnear the bank of\b", en), en
        assert s.fr[0] != "des", fr  # a generic plural subject takes "les"
        for k, w in enumerate(s.fr):
            if w.startswith("tranchant"):
                assert s.fr[k - 1] in sharp_ok, fr
        for i, key, _ in s.nouns if not {"who", "that"} & set(s.en) else ():  # a noun, then its verb
            if i + 2 < len(s.en) and key in ("hammer", "drill", "nail", "screw") and s.en[i + 1] in ("cut", "cuts"):
                raise AssertionError(en)
    generic = [s for s in sentences if s.tags[0] == "NOUN" or (s.tags[0] == "ADJ" and s.en[0] != "light")]
    assert generic and all(s.fr[0] == "les" for s in generic)


def test_farmer_and_player_use_the_generic_masculine(sentences):
    """The English names no gender, so the French must not choose one at random."""
    fr_words = {w for s in sentences for w in s.fr}
    assert {"fermier", "joueur"} <= fr_words and not {"fermière", "joueuse"} & fr_words


def test_river_bank_cues_come_before_and_after_and_bat_senses_are_balanced(corpus):
    from course_lib.corpus_grammar import TOPIC_CUES

    positions = {"before": 0, "after": 0}
    everything = corpus.train + corpus.valid + corpus.test
    for s in everything:
        for i, w, sense in s.senses:
            if (w, sense) == ("bank", "river"):
                cues = [k for k, t in enumerate(s.en) if t in TOPIC_CUES["nature"] and k != i]
                positions["before" if min(cues) < i else "after"] += 1
                assert "of the river" not in " ".join(s.en)
    assert positions["before"] >= 10 and positions["after"] >= 5, positions
    counts = statistics(corpus.train)["ambiguous_senses"]
    animal, sports = counts[("bat", "animal")], counts[("bat", "sports")]
    assert max(animal, sports) <= 2 * min(animal, sports), (animal, sports)


def test_probe_sets(corpus):
    probes = corpus.probe_sets(per_sense=8)
    train = {s.en for s in corpus.train}
    for word, senses in lex.AMBIGUOUS.items():
        assert set(probes[word]) == set(senses)
        for sense, items in probes[word].items():
            assert len(items) == 8, (word, sense)
            for s, fr_word in items:
                assert s.en not in train and fr_word == lex.AMBIGUOUS[word][sense]
                assert any(w == word and sn == sense for _, w, sn in s.senses)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_sentences must be an int >= 1"):
        generate_sentences(0)
    for n in (5, 8, 9):  # used to give an empty training split and a vocabulary of reserved tokens, silently
        with pytest.raises(ValueError, match=r"leaves the train.*empty.*num_sentences >= 20"):
            load_corpus(n)
    for seed in range(10):  # the size the message suggests works
        corpus = load_corpus(20, seed)
        assert corpus.train and corpus.valid and corpus.test
    with pytest.raises(ValueError, match="unknown split"):
        load_corpus(200).split("dev")
    with pytest.raises(ValueError, match="tokens but"):
        Sentence(("a", "b"), ("x",), ("DET",), "food")


def test_idiomatic_choices_from_the_fluent_review(sentences):
    """aimer takes the definite article even negated; no 'pas de' before a relative clause;
    no 'ma femme'/'mon homme' (wife/husband) nor 'grand homme'/'bonne femme' (idioms)."""
    for s in sentences:
        text = " ".join(s.fr)
        assert not re.search(r"\baim\w* pas (de|d')\b", text), text
        assert not re.search(r"\bpas (de|d') (\S+ ){1,3}?(qui|que|qu')\b", text), text
        assert not re.search(r"\b(ma|mes|mon) (\S+ )?(femmes?|hommes?)\b", text), text
        assert not re.search(r"\b(grands? (\S+ )?hommes?|bonnes? (\S+ )?femmes?|bons? (\S+ )?hommes?)\b", text), text


def test_french_forms_cover_every_inflection_of_a_lexicon_word():
    from course_lib.corpus_lexicon import ADJECTIVES, NOUNS, SENSE_TOPIC, TOPICS, french_forms

    assert french_forms("vu") == {"vu", "vue", "vus", "vues"}  # the participle agrees with a preceding object
    assert french_forms("scie") == {"scie", "scies"}
    adjective = next(a for a in ADJECTIVES if not a.before)
    assert french_forms(adjective.fr[0]) == set(adjective.fr)
    assert {"regarde", "regardons", "regardent"} <= french_forms("regarde")
    assert french_forms("apple") == {"apple"}  # the company: no article, no plural
    assert all(n.fr_pl in french_forms(n.fr) for n in NOUNS)
    assert set(SENSE_TOPIC.values()) <= set(TOPICS)


# --- choice points, steering, and the cue probes -----------------------------------------



from course_lib.corpus import (  # noqa: E402
    CUE_COLUMNS,
    CUE_WORDS,
    NO_CUE_PROBES,
    TOPIC_CUES,
    Grammar,
    Impossible,
    SteeredGrammar,
    cue_probes,
)

TOPIC_LIST = list(lex.TOPICS)


def test_named_choice_points_change_nothing_in_what_is_drawn():
    """A SteeredGrammar that forces nothing draws exactly what the Grammar draws, and its
    trace holds every decision: replayed with another Random, it gives the same sentence."""
    for seed in range(3):
        plain, steered = Grammar(random.Random(seed)), SteeredGrammar(random.Random(seed))
        for k in range(150):
            topic = TOPIC_LIST[k % len(TOPIC_LIST)]
            s = plain.sentence(topic)
            assert steered.sentence(topic) == s
            replay = SteeredGrammar(random.Random(seed + 1000), steered.trace)
            assert replay.sentence(topic) == s and not replay.unused


def test_steering_refuses_what_the_grammar_does_not_offer():
    bat_sports = NOUN["bat/sports"]
    hit = next(v for v in lex.VERBS if v.key == "hit")
    for topic, forced in [("animals", {"object.noun": bat_sports}),      # no sports gear among animals
                          ("food", {"verb": hit}),                         # nothing to hit in the kitchen
                          ("nature", {"place.noun": NOUN["bank/money"], "place": 0.0}),
                          ("sports", {"negated": 1.0}),                    # not a float in [0, 1)
                          ("finance", {"place": 0.0, "place.noun": NOUN["bank/money"], "place.preposition": "on"})]:
        with pytest.raises(Impossible):
            for seed in range(50):  # every draw that reaches the forced point must refuse it
                SteeredGrammar(random.Random(seed), forced).sentence(topic)


@pytest.fixture(scope="module")
def cue(corpus):
    return corpus.cue_probes()  # the default: 60 per cell


def _other(word, sense):
    return next(s for s in lex.AMBIGUOUS[word] if s != sense)


# An oracle written from the lexicon alone: in which topics can a token occur at all?
def _noun_readings(token):
    return [n for n in (*lex.NOUNS, *lex.PLACES, lex.COMPANY) if token in (n.en, n.en_pl)]


def _verb_readings(token):
    return [v for v in lex.VERBS if token in (v.en, v.en_3sg) or (v.past and token == "saw")]


def _fits(noun, classes):
    return noun.cls in classes or noun.key in classes


def _verb_topics(v):
    nouns = [*lex.NOUNS, lex.COMPANY]
    return {t for t in lex.TOPICS
            if any(_fits(n, v.subjects) and t in n.topics for n in nouns)
            and any(_fits(n, v.objects) and n.key not in v.exclude and t in n.topics for n in nouns)}


def _adjective_topics(a):
    return {t for n in lex.NOUNS if _fits(n, a.classes) and n.en != a.en for t in n.topics}


def topics_of(token):
    """Every topic in which the grammar can put this English token (all topics for function words)."""
    readings = [set(n.topics) for n in _noun_readings(token)] + [_verb_topics(v) for v in _verb_readings(token)]
    readings += [_adjective_topics(a) for a in lex.ADJECTIVES if a.en == token]
    return set().union(*readings) if readings else set(lex.TOPICS)


def sense_noun(word, sense):
    return lex.COMPANY if (word, sense) == ("apple", "company") else NOUN[f"{word}/{sense}"]


def test_every_cell_is_full_new_and_decidable(cue, corpus):
    train = {s.en for s in corpus.train}
    assert set(cue) == set(CUE_WORDS)
    for word, senses in cue.items():
        assert set(senses) == set(lex.AMBIGUOUS[word])
        for sense, columns in senses.items():
            assert tuple(columns) == CUE_COLUMNS
            for column, probes in columns.items():
                expected = 0 if (word, sense, column) in NO_CUE_PROBES else 60
                assert len(probes) == expected, (word, sense, column)
                assert len({p.sentence.en for p in probes}) == len(probes)
                for p in probes:
                    s = p.sentence
                    assert s.en not in train and decidable(s) and p.french == lex.AMBIGUOUS[word][sense]
                    assert [(i, sn) for i, w, sn in s.senses if w == word] == [(p.position, sense)]
                    assert (p.cue < p.position) == (column == "before") and p.cue != p.position
                    assert (p.witness is not None) == (column == "only after")


def test_only_after_prefixes_allow_both_senses(cue):
    """For every "only after" probe, both senses can be generated after the same words: the
    witness is a sentence of the grammar with that prefix and the other sense. Independently,
    the lexicon's rules let the prefix take the other sense: each word of it occurs in a topic
    of the other sense, and the verb, the adjectives and the preposition before the word fit it."""
    for word in CUE_WORDS:
        for sense, columns in cue[word].items():
            other = _other(word, sense)
            for p in columns["only after"]:
                s, w, i = p.sentence, p.witness, p.position
                assert w.en[:i] == s.en[:i] and (i, word, other) in w.senses and decidable(w), " ".join(s.en)
                prefix = s.en[:i]
                if word == "light":
                    other_topics = set(NOUN["light/lamp"].topics) if other == "lamp" \
                        else _adjective_topics(next(a for a in lex.ADJECTIVES if a.en == "light"))
                else:
                    other_topics = set(sense_noun(word, other).topics)
                allowed = set(lex.TOPICS).intersection(*(topics_of(t) for t in prefix))
                assert allowed & other_topics, (" ".join(s.en), allowed, other_topics)
                if word == "bank":  # "PREP the bank ,": the preposition takes both places
                    assert s.en[i - 1] == "the" and s.en[i - 2] in lex.PLACE_PREPOSITIONS["bank/" + other] and s.en[i + 1] == ","
                    continue
                verb_at = max(k for k in range(i) if s.tags[k] == "VERB")
                adjectives = [t for k, t in enumerate(prefix) if k > verb_at and s.tags[k] == "ADJ"]
                if word == "bat" or other == "lamp":
                    target = sense_noun(word, other)
                    assert any(_fits(target, v.objects) and target.key not in v.exclude
                               for v in _verb_readings(s.en[verb_at])), " ".join(s.en)
                    assert all(_fits(target, a.classes) for a in lex.ADJECTIVES if a.en in adjectives), " ".join(s.en)
                else:  # the lamp -> "light" an adjective before some noun that the verb and adjectives fit
                    assert any(_fits(n, v.objects) and _fits(n, ("tool", "wood", "gear", "device"))
                               and all(_fits(n, a.classes) for a in lex.ADJECTIVES if a.en in adjectives)
                               and allowed & set(n.topics)
                               for v in _verb_readings(s.en[verb_at]) for n in lex.NOUNS), " ".join(s.en)
                if word != "light":  # no word of the sense's topic before it; the cue after it is one
                    assert all(allowed_one & set(sense_noun(word, other).topics) for allowed_one in
                               (topics_of(t) for t in prefix))
                    assert s.en[p.cue] in TOPIC_CUES[lex.SENSE_TOPIC[sense]]


def test_before_probes_are_decided_before_the_word(cue):
    """The cue before the word occurs in no topic of the other sense (bank, bat), or is a verb
    that takes no lamp (light): by the lexicon's rules the other sense cannot follow."""
    for word in CUE_WORDS:
        for sense, columns in cue[word].items():
            other = _other(word, sense)
            for p in columns["before"]:
                s, cue_word = p.sentence, p.sentence.en[p.cue]
                if word == "light":
                    assert s.tags[p.cue] == "VERB" and not any(
                        _fits(NOUN["light/lamp"], v.objects) for v in _verb_readings(cue_word)), " ".join(s.en)
                else:
                    assert not topics_of(cue_word) & set(sense_noun(word, other).topics), (cue_word, " ".join(s.en))
                    assert cue_word in TOPIC_CUES[lex.SENSE_TOPIC[sense]]


def _noun_phrase_start(tags, end):
    """Start of the noun phrase that ends at ``end`` (determiner and adjectives before a noun)."""
    j = end
    while j > 0 and tags[j - 1] in ("ADJ", "DET"):
        j -= 1
    return j


def _verb_comes_next(s, i):
    """Does the word order of s.en[:i] require a verb at position i (else a noun phrase goes on)?

    A verb follows a complete subject: the sentence's (at its start or after a fronted place
    phrase ", ", with its relative clause if it has one: "the child who watches the cat" +
    the main verb), or that of a relative clause in which the head is the object ("that
    the child" + verb); it follows "not", and "who"/"that" directly. After a verb, its
    object comes, unless that verb closes such a relative clause ("the boy that the child
    saw" + the main verb). (After a clause on the object only a place phrase or "." can
    come, so the rule need not tell a clause on the subject from one on the object.)"""
    tags, en = s.tags, s.en
    prev = i - 1
    if en[prev] in ("who", "that", "not"):
        return True
    if tags[prev] in ("NOUN", "PROPN", "PRON"):
        j = _noun_phrase_start(tags, prev)
        if j == 0 or en[j - 1] in (",", "that"):  # the subject of the sentence or of "that NP VERB"
            return True
        # the object closing "who/that VERB NP" (a clause on the subject: the main verb is next)
        return tags[j - 1] == "VERB" and en[j - 2] in ("who", "that")
    if tags[prev] == "VERB":  # closes a clause "that NP VERB" (then the main verb), or wants its object
        j = _noun_phrase_start(tags, prev - 1) if tags[prev - 1] in ("NOUN", "PROPN", "PRON") else prev
        return j < prev and j > 0 and en[j - 1] == "that"
    return False  # after a determiner or an adjective: the noun phrase goes on


def test_words_left_out_are_decided_by_the_words_before_them(sentences, corpus):
    """apple: a determiner or an adjective before it makes it the fruit, none the company.
    saw, watch: the word order before them says whether a verb comes next, except after
    'light' (adjective or noun), and that exception is rare in training."""
    adjectives = {a.en for a in lex.ADJECTIVES}
    counts = {"apple": 0, "saw": 0, "watch": 0}
    after_light = 0
    for s in sentences + corpus.train:
        for i, word, sense in s.senses:
            if word == "apple":
                noun_context = i > 0 and (s.en[i - 1] in {"the", "a", "an", "my"} or s.en[i - 1] in adjectives)
                assert sense == ("fruit" if noun_context or s.en[i] == "apples" else "company"), " ".join(s.en)
            elif word in ("saw", "watch") and s.en[i - 1] == "light":
                after_light += s in corpus.train and sense in ("see", "look")
            elif word in ("saw", "watch"):
                assert (sense in ("see", "look")) == _verb_comes_next(s, i), " ".join(s.en)
            counts[word] = counts.get(word, 0) + 1
    assert min(counts["apple"], counts["saw"], counts["watch"]) > 100
    assert after_light <= len(corpus.train) / 1000  # the exception: very rare
    assert set(NO_CUE_PROBES) - {k for k in NO_CUE_PROBES if isinstance(k, tuple)} == \
        set(lex.AMBIGUOUS) - set(CUE_WORDS)


def test_no_prefix_rules_out_light_the_adjective_before_a_lamp():
    """Every verb that takes a lamp, and every adjective that fits one, also take a device of
    the same topic that 'light' describes: so before 'light' the lamp is never decided."""
    lamp = NOUN["light/lamp"]
    light = next(a for a in lex.ADJECTIVES if a.en == "light")
    devices = [n for n in lex.NOUNS if n.key != lamp.key and _fits(n, light.classes) and set(n.topics) & set(lamp.topics)]
    for v in lex.VERBS:
        if _fits(lamp, v.objects) and lamp.key not in v.exclude:
            for a in [None] + [a for a in lex.ADJECTIVES if a.before and _fits(lamp, a.classes)]:
                assert any(_fits(n, v.objects) and n.key not in v.exclude and (a is None or _fits(n, a.classes))
                           for n in devices), (v.key, a)


def test_cue_probes_are_reproducible_and_a_larger_set_extends_a_smaller_one(corpus):
    small, large = cue_probes(corpus.train, per_cell=3, seed=1), cue_probes(corpus.train, per_cell=6, seed=1)
    assert small == cue_probes(corpus.train, per_cell=3, seed=1)
    for word in CUE_WORDS:
        for sense in lex.AMBIGUOUS[word]:
            for column in CUE_COLUMNS:
                assert large[word][sense][column][:3] == small[word][sense][column]
    with pytest.raises(ValueError, match="per_cell"):
        cue_probes(corpus.train, per_cell=0)


def test_probes_the_grammar_cannot_give_are_refused_quickly_not_returned_short(corpus, monkeypatch):
    """A grammar that has run out (here: one that repeats one sentence) used to be drawn from 400 * per_sense
    times, and probe_sets then returned fewer sentences than asked, silently."""
    import course_lib.corpus as C

    monkeypatch.setattr(C, "STALL_DRAWS", 300)
    draws = {"n": 0}
    real = C.Grammar.sentence
    first = {}

    def always_the_same(self, topic):
        draws["n"] += 1
        key = topic
        if key not in first:
            first[key] = real(self, topic)
        return first[key]

    monkeypatch.setattr(C.Grammar, "sentence", always_the_same)
    with pytest.raises(RuntimeError, match=r"probe_sets: only \d+ for \w+ \(\w+\).* of the 50 new sentences asked "
                                           r"per sense.*ask for fewer"):
        corpus.probe_sets(per_sense=50)
    assert draws["n"] <= 400  # stopped after STALL_DRAWS draws without a new sentence, not 400 * 50
    monkeypatch.undo()
    import course_lib.corpus_probes as P  # where cue_probes is written (course_lib.corpus re-exports it)

    monkeypatch.setattr(P, "STALL_DRAWS", 200)
    probe = next(iter(C.cue_probes(corpus.train, per_cell=1, seed=1)["bank"].values()))["before"][0]
    draws["n"] = 0

    def the_same_probe(*args):
        draws["n"] += 1
        return probe

    monkeypatch.setattr(P, "_draw_probe", the_same_probe)
    with pytest.raises(RuntimeError, match=r"only 1 of 5 probes found for bank .*ask for fewer"):
        C.cue_probes(corpus.train, per_cell=5)
    assert draws["n"] == 1 + 200  # one new probe, then STALL_DRAWS draws that bring nothing new
