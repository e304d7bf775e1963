"""Vocabularies, batches and BLEU."""

from __future__ import annotations

import pytest
import sacrebleu
import torch

from course_lib import masked_softmax
from course_lib.corpus import load_corpus
from course_lib.text import RESERVED, Vocab, bleu, pad_batch


def test_vocab_reserved_first_frequency_order_and_unknowns(d2l):
    tokens = "the cat sat on the mat the end".split()
    v = Vocab(tokens, min_freq=1)
    assert v.idx_to_token[: len(RESERVED)] == list(RESERVED) and v["<pad>"] == 0
    assert v.idx_to_token[len(RESERVED)] == "the"  # most frequent first
    assert v["dog"] == v.unk and v[["the", "dog"]] == [v["the"], v.unk]
    assert v.to_tokens(v[["cat", "mat"]]) == ["cat", "mat"] and v.to_tokens(torch.tensor([0])) == ["<pad>"]
    assert "end" not in Vocab(tokens, min_freq=2).token_to_idx
    theirs = d2l.Vocab(tokens, reserved_tokens=list(RESERVED))  # same token set as d2l's
    assert set(theirs.idx_to_token) == set(v.idx_to_token) and len(theirs) == len(v)


def test_vocab_save_load_round_trip(tmp_path):
    v = Vocab("le chat a vu la scie".split())
    v.save(tmp_path / "v.json")
    w = Vocab.load(tmp_path / "v.json")
    assert w.idx_to_token == v.idx_to_token and w["scie"] == v["scie"] and w["zèbre"] == w.unk
    (tmp_path / "bad.json").write_text('{"tokens": []}')
    with pytest.raises(ValueError, match="not a saved Vocab"):
        Vocab.load(tmp_path / "bad.json")


def test_pad_batch_and_its_errors():
    x, lens = pad_batch([[5, 6, 7], [8]], pad=0)
    assert x.tolist() == [[5, 6, 7], [8, 0, 0]] and lens.tolist() == [3, 1]
    x, _ = pad_batch([[5]], pad=0, num_steps=4)
    assert x.shape == (1, 4)
    with pytest.raises(ValueError, match="does not fit num_steps=2"):
        pad_batch([[1, 2, 3]], pad=0, num_steps=2)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(num_sentences=1500, seed=4)


def test_translation_batches_shapes_eos_and_masks(corpus):
    src, src_len, tgt, tgt_len = next(iter(corpus.loader("valid", 16)))
    assert src.shape[0] == tgt.shape[0] == 16 and src.shape[1] == int(src_len.max())
    first = corpus.valid[0]
    assert corpus.src_vocab.to_tokens(src[0, : src_len[0]]) == [*first.en, "<eos>"]
    assert corpus.tgt_vocab.to_tokens(tgt[0, : tgt_len[0]]) == [*first.fr, "<eos>"]
    assert (src[torch.arange(src.shape[1]) >= src_len[:, None]] == corpus.src_vocab.pad).all()
    # the valid lengths mask exactly the padding in attention
    weights = masked_softmax(torch.zeros(16, 1, src.shape[1]), src_len)
    assert ((weights[:, 0] > 0) == (src != corpus.src_vocab.pad)).all()


def test_tagging_and_topic_batches(corpus):
    tokens, lengths, tags = next(iter(corpus.tagging_loader("train", 8, shuffle=False)))
    assert tokens.shape == tags.shape and (tags[torch.arange(tags.shape[1]) >= lengths[:, None]] == -100).all()
    s = corpus.train[0]
    assert corpus.tag_vocab.to_tokens(tags[0, : lengths[0]]) == list(s.tags)
    tokens, lengths, labels = next(iter(corpus.topic_loader("train", 8, shuffle=False)))
    assert labels.tolist() == [corpus.topics.index(x.topic) for x in corpus.train[:8]]


def test_shuffled_loader_is_seeded(corpus):
    a = next(iter(corpus.loader("train", 8)))[0]
    b = next(iter(corpus.loader("train", 8)))[0]
    assert torch.equal(a, b)


def test_bleu_equals_sacrebleu_on_the_joined_tokens():
    hyps = [["le", "chat", "a", "vu", "la", "scie", "."], ["l'", "homme", "mange", "."]]
    refs = [["le", "chat", "a", "vu", "une", "scie", "."], ["l'", "homme", "mange", "une", "pomme", "."]]
    expected = sacrebleu.corpus_bleu(["le chat a vu la scie .", "l' homme mange ."],
                                     [["le chat a vu une scie .", "l' homme mange une pomme ."]], tokenize="none").score
    assert bleu(hyps, refs) == pytest.approx(expected)
    assert 0 < bleu(hyps, refs) < 100
    assert bleu(refs, refs) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(hyps, refs[:1])


@pytest.mark.parametrize(("n", "batch_size", "pool", "seed"), [(1000, 16, 5, 0), (333, 7, 50, 1), (10, 4, 1, 2)])
def test_length_grouped_batches_cover_every_item_once_with_less_padding(n, batch_size, pool, seed):
    from course_lib.text import LengthGroupedBatches

    lengths = torch.randint(1, 40, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    gen = torch.Generator().manual_seed(seed)
    sampler = LengthGroupedBatches(lengths, batch_size, gen, pool_batches=pool)
    epoch1 = list(sampler)
    assert len(epoch1) == len(sampler)
    assert sorted(i for b in epoch1 for i in b) == list(range(n))  # every item exactly once
    assert all(0 < len(b) <= batch_size for b in epoch1)
    epoch2 = list(sampler)
    assert epoch2 != epoch1  # a new order every epoch
    gen.manual_seed(seed)
    assert list(sampler) == epoch1  # re-seeding the generator repeats the batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epoch1)
    random_batches = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).split(batch_size)
    padded_random = sum(len(b) * max(lengths[i] for i in b.tolist()) for b in random_batches)
    if pool > 1:
        assert padded < 0.8 * padded_random  # grouping by length pads much less


def test_loader_by_length_is_seeded_and_needs_shuffling(corpus):
    a = [tgt.shape for _, _, tgt, _ in corpus.loader("train", batch_size=32, by_length=True)]
    b = [tgt.shape for _, _, tgt, _ in corpus.loader("train", batch_size=32, by_length=True)]
    assert a == b and sum(s[0] for s in a) == len(corpus.train)
    plain = [tgt.shape for _, _, tgt, _ in corpus.loader("train", batch_size=32)]
    assert sum(s[0] * s[1] for s in a) < 0.75 * sum(s[0] * s[1] for s in plain)
    with pytest.raises(ValueError, match="needs shuffle=True"):
        corpus.loader("test", batch_size=32, by_length=True)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        from course_lib.text import LengthGroupedBatches
        LengthGroupedBatches([1, 2], 0, torch.Generator())


def test_vocab_refuses_ids_where_tokens_go_and_out_of_range_ids(tmp_path):
    v = Vocab("le chat a vu la scie".split())
    n = len(v)
    with pytest.raises(TypeError, match=r"got int 5 \(ids go the other way: vocab.to_tokens\(ids\)\)"):
        v[5]
    with pytest.raises(TypeError, match="got Tensor"):
        v[torch.tensor([[1, 2], [3, 4]])]
    for bad in (-1, n, [1, -1], torch.tensor([[1, n]])):  # -1 used to give the last token silently
        with pytest.raises(ValueError, match=rf"token id must be in \[0, {n}\)"):
            v.to_tokens(bad)
    ids = torch.tensor([[v["le"], v["chat"]], [v["la"], v["scie"]]])
    assert v.to_tokens(ids) == [["le", "chat"], ["la", "scie"]] and v.to_tokens(ids[0, 1]) == "chat"
    with pytest.raises(TypeError, match="tokens must be a list of tokens"):
        Vocab("le chat")  # would be a vocabulary of characters
    (tmp_path / "damaged.json").write_text('{"idx_to_token": ["<unk>", "le"')
    with pytest.raises(ValueError, match="not a saved Vocab"):
        Vocab.load(tmp_path / "damaged.json")
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").idx_to_token == v.idx_to_token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.json", "v.json"]  # no temporary file left


def test_vocab_save_replaces_an_existing_file_only_when_asked(tmp_path):
    v = Vocab("le chat a vu la scie".split())
    path = tmp_path / "v.json"
    path.write_text("notes of my own")
    with pytest.raises(FileExistsError, match="v.json' already exists; it was left as it is.*overwrite=True"):
        v.save(path)
    assert path.read_text() == "notes of my own"
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        v.save(path, overwrite="yes")
    v.save(path, overwrite=True)
    assert Vocab.load(path).idx_to_token == v.idx_to_token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vocab_of_sentences_counts_their_tokens_as_d2l_does(d2l, seed):
    """A list of token lists used to fail with "unhashable type: 'list'"; d2l's Vocab flattens it."""
    g = torch.Generator().manual_seed(seed)
    words = "le chat a vu la scie près de banque".split()
    sentences = [[words[i] for i in torch.randint(len(words), (int(n),), generator=g).tolist()]
                 for n in torch.randint(1, 8, (5 + seed,), generator=g)]
    flat = [t for s in sentences for t in s]
    copy = [list(s) for s in sentences]
    for min_freq in (1, 2):
        v = Vocab(sentences, min_freq=min_freq)
        assert v.idx_to_token == Vocab(flat, min_freq=min_freq).idx_to_token
        theirs = d2l.Vocab(sentences, min_freq=min_freq, reserved_tokens=list(RESERVED))
        assert set(theirs.idx_to_token) == set(v.idx_to_token)
    assert sentences == copy  # unchanged
    assert Vocab([tuple(s) for s in sentences]).idx_to_token == Vocab(flat).idx_to_token
    with pytest.raises(TypeError, match=r"not a mix: item 1 is str 'chat'"):
        Vocab([["le"], "chat"])
    with pytest.raises(TypeError, match=r"tokens must be str .*got list \['le'\]"):
        Vocab([[["le"], ["chat"]]])  # one level of nesting only
