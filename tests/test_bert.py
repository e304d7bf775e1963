"""BERT (chapter 6): d2l 1.0.3 and Hugging Face oracles, masking, next-sentence pairs, losses, DDP.

Oracles:

* d2l 1.0.3's get_tokens_and_segments, BERTEncoder, MaskLM, NextSentencePred and
  BERTModel: state dicts load strictly both ways, same outputs in eval mode.
* Hugging Face ``transformers``: a small, randomly initialized BertForPreTraining
  (built offline from a BertConfig), turned into our BERTModel by from_huggingface,
  gives the same hidden states, MLM logits and NSP logits; its parameter count on the
  meta device equals ours for BERT-Base.
* The masked-LM loss against a plain mean over the real positions, and against d2l's
  _get_batch_loss_bert, which lets padded positions count (d2l issue #2582).
* Pretraining with torchrun on 2 CPU processes (gloo) against one process with the same
  global batch.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.bert import (
    BERT_CONFIGS,
    IGNORE_INDEX,
    BERTClassifier,
    BERTEncoder,
    BERTModel,
    BERTPretrainingDataset,
    BERTTagger,
    MaskLM,
    NextSentencePred,
    bert_parameter_count,
    encode_inputs,
    encode_tagging,
    from_huggingface,
    get_tokens_and_segments,
    load_pretrained,
    load_pretraining_data,
    mask_tokens,
    masked_lm_loss,
    nsp_pairs,
    pretraining_loss,
    save_pretrained,
    special_token_ids,
    to_huggingface,
    trim_pair,
)
from course_lib.corpus import load_corpus
from course_lib.text import CLS, MASK, PAD, RESERVED, SEP, UNK, Vocab
from course_lib.transformer import count_parameters

ROOT = Path(__file__).resolve().parents[1]
B, T, D, F_, H, V, L = 3, 9, 16, 32, 4, 41, 20
VALID = torch.tensor([9, 5, 7])


def inputs(seed=0, vocab=V):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (B, T), generator=g)
    segments = (torch.arange(T) >= 4).long().expand(B, T).clone()
    positions = torch.tensor([[1, 3, 8], [1, 2, 4], [0, 5, 6]])
    return tokens, segments, positions


def randomize(module: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """Perturb every parameter (LayerNorms start at 1 and 0, biases at 0): a swapped tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(1200)


# ---------------------------------------------------------------------------------- d2l 1.0.3


def test_tokens_and_segments_match_d2l(d2l):
    a, b = ["the", "cat", "eats"], ["it", "sleeps"]
    for args in ((a,), (a, b), ([], b), ([],)):
        assert get_tokens_and_segments(*args) == d2l.get_tokens_and_segments(*(list(x) for x in args))
    tokens, segments = get_tokens_and_segments(a, b)
    assert tokens == [CLS, *a, SEP, *b, SEP] and segments == [0] * 5 + [1] * 3


def assert_loads_both_ways(make_ours, theirs: nn.Module) -> nn.Module:
    ours = make_ours()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours


def test_bert_model_matches_d2l_both_ways(d2l):
    tokens, segments, positions = inputs()
    torch.manual_seed(0)
    theirs = d2l.BERTModel(V, D, F_, H, 2, 0.2, max_len=L)
    theirs(tokens, segments, VALID, positions)  # materialize d2l's lazy layers
    randomize(theirs).eval()
    expected = theirs(tokens, segments, VALID, positions)
    ours = BERTModel(V, D, F_, H, 2, 0.2, max_len=L)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        got = ours(tokens, segments, VALID, positions)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e)
    # and back: a fresh d2l model (lazy layers uninitialized) takes our weights
    ours = randomize(BERTModel(V, D, F_, H, 2, 0.2, max_len=L), seed=1).eval()
    back = d2l.BERTModel(V, D, F_, H, 2, 0.2, max_len=L)
    back.load_state_dict(ours.state_dict(), strict=True)
    back.eval()
    for g, e in zip(ours(tokens, segments, VALID, positions), back(tokens, segments, VALID, positions)):
        torch.testing.assert_close(g, e)
    # no pred_positions: no MLM output, as in d2l
    assert ours(tokens, segments, VALID)[1] is None


def test_parts_match_d2l(d2l):
    tokens, segments, positions = inputs(1)
    torch.manual_seed(1)
    theirs = d2l.BERTEncoder(V, D, F_, H, 2, 0.0, max_len=L)
    theirs(tokens, segments, VALID)  # materialize the lazy layers
    randomize(theirs).eval()
    ours = assert_loads_both_ways(lambda: BERTEncoder(V, D, F_, H, 2, 0.0, max_len=L), theirs).eval()
    torch.testing.assert_close(ours(tokens, segments, VALID), theirs(tokens, segments, VALID))
    X = torch.randn(B, T, D)
    their_mlm = d2l.MaskLM(V, D)
    their_mlm(X, positions)
    randomize(their_mlm)
    for make in (lambda: MaskLM(V, D), lambda: MaskLM(V, D, num_inputs=D)):  # lazy, then eager
        mlm = make()
        if isinstance(mlm.mlp[0], nn.LazyLinear):
            mlm(X, positions)
        mlm = assert_loads_both_ways(lambda m=mlm: m, their_mlm)
        torch.testing.assert_close(mlm(X, positions), their_mlm(X, positions))
    their_nsp = d2l.NextSentencePred()
    their_nsp(X[:, 0])
    nsp = assert_loads_both_ways(lambda: NextSentencePred(D), their_nsp)
    torch.testing.assert_close(nsp(X[:, 0]), their_nsp(X[:, 0]))


def test_attention_weights_of_every_block_and_head():
    tokens, segments, _ = inputs()
    model = randomize(BERTModel(V, D, F_, H, 3, 0.0, max_len=L)).eval()
    encoded = model(tokens, segments, VALID)[0]
    weights = model.attention_weights
    assert len(weights) == 3 and all(w.shape == (B, H, T, T) for w in weights)
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T))
        for b, n in enumerate(VALID.tolist()):
            assert torch.all(w[b, :, :, n:] == 0)  # padded keys get no attention
    model.impl = "sdpa"
    torch.testing.assert_close(model(tokens, segments, VALID)[0], encoded)
    with pytest.raises(RuntimeError, match="manual"):
        model.attention_weights


def test_input_checks():
    model = BERTModel(V, D, F_, H, 1, 0.0, max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="activation"):
        BERTModel(V, D, F_, H, 1, 0.0, activation="tanh")
    # no segments: all zero
    X = torch.randint(0, V, (2, 5))
    model.eval()
    torch.testing.assert_close(model(X)[0], model(X, torch.zeros_like(X))[0])


def test_tied_weights_and_options():
    model = BERTModel(V, D, F_, H, 1, 0.0, tie_weights=True, embedding_norm=True, activation="gelu", eps=1e-12)
    assert model.tie_weights and model.mlm.mlp[3].weight is model.encoder.token_embedding.weight
    assert model.mlm.mlp[3].bias is not None  # the decoder keeps its own bias
    assert isinstance(model.encoder.blks[0].ffn.gelu, nn.GELU) and isinstance(model.mlm.mlp[1], nn.GELU)
    assert all(m.eps == 1e-12 for m in model.modules() if isinstance(m, nn.LayerNorm))
    assert not BERTModel(V, D, F_, H, 1, 0.0).tie_weights


# ------------------------------------------------------------------------------ Hugging Face


def hf_config(**overrides):
    transformers = pytest.importorskip("transformers")
    cfg = dict(vocab_size=V, hidden_size=D, num_hidden_layers=2, num_attention_heads=H, intermediate_size=F_,
               max_position_embeddings=L, type_vocab_size=2, hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1)
    cfg.update(overrides)
    return transformers, transformers.BertConfig(**cfg)


@pytest.mark.parametrize("overrides", [{}, {"hidden_act": "relu", "layer_norm_eps": 1e-5, "type_vocab_size": 3},
                                       {"tie_word_embeddings": False}])
def test_from_huggingface_reproduces_bert_for_pretraining(overrides):
    transformers, cfg = hf_config(**overrides)
    torch.manual_seed(0)
    theirs = randomize(transformers.BertForPreTraining(cfg), scale=0.2).eval()
    ours = from_huggingface(theirs)
    assert not ours.training and ours.tie_weights == cfg.tie_word_embeddings
    tokens, segments, _ = inputs(2)
    segments = segments * (cfg.type_vocab_size - 1)
    attention_mask = (torch.arange(T) < VALID.unsqueeze(1)).long()
    with torch.no_grad():
        out = theirs(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask,
                     output_hidden_states=True)
        all_positions = torch.arange(T).expand(B, T)
        for impl in ("manual", "sdpa"):
            ours.impl = impl
            encoded, mlm, nsp = ours(tokens, segments, VALID, all_positions)
            for b, n in enumerate(VALID.tolist()):  # padded positions are free to differ
                torch.testing.assert_close(encoded[b, :n], out.hidden_states[-1][b, :n], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(mlm[b, :n], out.prediction_logits[b, :n], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(nsp, out.seq_relationship_logits, atol=1e-5, rtol=1e-4)


def test_from_huggingface_bert_model_and_errors():
    transformers, cfg = hf_config()
    torch.manual_seed(1)
    theirs = randomize(transformers.BertModel(cfg)).eval()
    ours = from_huggingface(theirs)
    tokens, segments, _ = inputs(3)
    with torch.no_grad():
        out = theirs(input_ids=tokens, token_type_ids=segments)
        encoded, _, _ = ours(tokens, segments)
        torch.testing.assert_close(encoded, out.last_hidden_state, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.hidden(encoded[:, 0]), out.pooler_output, atol=1e-5, rtol=1e-4)
    assert ours.encoder.blks[0].attention.attention.dropout_p == cfg.attention_probs_dropout_prob
    with pytest.raises(ValueError, match="hidden_act"):
        from_huggingface(transformers.BertModel(hf_config(hidden_act="gelu_new")[1]))
    with pytest.raises(ValueError, match="BERT"):
        from_huggingface(nn.Linear(2, 2))


def test_course_lib_imports_without_transformers():
    """transformers is optional (the hf extra): importing course_lib, its BERT and pretraining never needs it."""
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None  # any import of transformers now fails\n"
        "import course_lib, course_lib.bert, course_lib.pretrain_bert\n"
        "from course_lib.bert import BERTModel, from_huggingface\n"
        "BERTModel(10, 8, 16, 2, 1, 0.0)\n"
        "try:\n"
        "    from_huggingface(object())\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
    )
    _prints_import_error(code)


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name, low, high", [("base", 109e6, 111e6), ("large", 330e6, 345e6)])
def test_parameter_count_of_bert_base_and_large(name, low, high):
    cfg = BERT_CONFIGS[name]
    with torch.device("meta"):
        model = BERTModel(**cfg)
    n = count_parameters(model)
    assert n == bert_parameter_count(**cfg)
    assert low < n < high, n
    encoder_only = bert_parameter_count(**cfg, heads=False)
    assert count_parameters(model.encoder) == encoder_only


def test_parameter_count_equals_huggingface_for_base():
    transformers = pytest.importorskip("transformers")
    cfg = BERT_CONFIGS["base"]
    hf = transformers.BertConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["num_hiddens"],
                                 num_hidden_layers=cfg["num_blks"], num_attention_heads=cfg["num_heads"],
                                 intermediate_size=cfg["ffn_num_hiddens"], max_position_embeddings=cfg["max_len"])
    with torch.device("meta"):
        theirs = transformers.BertForPreTraining(hf)
    assert count_parameters(theirs) == bert_parameter_count(**cfg) == 110_106_428


@pytest.mark.parametrize("tie, norm", [(False, False), (True, False), (False, True), (True, True)])
def test_parameter_count_formula_for_small_models(tie, norm):
    kwargs = dict(num_segments=3, tie_weights=tie, embedding_norm=norm)
    model = BERTModel(V, D, F_, H, 2, 0.1, L, **kwargs)
    assert count_parameters(model) == bert_parameter_count(V, D, F_, H, 2, 0.1, L, **kwargs)


# ------------------------------------------------------------------------------------- losses


def test_masked_lm_loss_ignores_padded_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, V, generator=g)
    labels = torch.randint(0, V, (4, 5), generator=g)
    weights = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float32)
    real = weights > 0
    expected = F.cross_entropy(logits[real], labels[real])
    x = logits.clone().requires_grad_()
    loss = masked_lm_loss(x, labels, weights)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    assert torch.all(x.grad[~real] == 0)
    # Whatever the padded positions hold (here huge values, inf and nan), same loss, same gradient.
    changed = logits.clone()
    changed[~real] = torch.randn(int((~real).sum()), V, generator=g) * 1e4
    changed[2, 3, 0], changed[2, 4, 1] = float("inf"), float("nan")
    y = changed.clone().requires_grad_()
    other = masked_lm_loss(y, labels, weights)
    other.backward()
    torch.testing.assert_close(other, loss)
    torch.testing.assert_close(y.grad[real], x.grad[real])
    assert torch.all(y.grad[~real] == 0)
    # weighted sum, and nothing to predict
    torch.testing.assert_close(masked_lm_loss(logits, labels, weights, reduction="sum"), expected * real.sum())
    assert masked_lm_loss(logits, labels, torch.zeros_like(weights)) == 0


def test_d2l_lets_padded_positions_count_and_ours_does_not(d2l):
    """d2l 1.0.3's _get_batch_loss_bert averages over every prediction slot, padded ones included (issue #2582)."""
    g = torch.Generator().manual_seed(1)
    mlm_logits, nsp_logits = torch.randn(2, 4, V, generator=g), torch.randn(2, 2, generator=g)
    labels, nsp = torch.randint(0, V, (2, 4), generator=g), torch.tensor([0, 1])
    weights = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 0]])

    def d2l_mlm(logits):
        net = lambda *args: (None, logits, nsp_logits)  # noqa: E731  (a stand-in for the model)
        return d2l._get_batch_loss_bert(net, nn.CrossEntropyLoss(), V, None, None, torch.ones(2), None, weights,
                                        labels, nsp)[0]

    changed = mlm_logits.clone()
    changed[weights == 0] += 5 * torch.randn(int((weights == 0).sum()), V, generator=g)
    assert not torch.isclose(d2l_mlm(mlm_logits), d2l_mlm(changed))  # d2l: the padding changes the loss
    torch.testing.assert_close(d2l_mlm(mlm_logits), F.cross_entropy(mlm_logits.reshape(-1, V), labels.reshape(-1)))
    torch.testing.assert_close(masked_lm_loss(mlm_logits, labels, weights), masked_lm_loss(changed, labels, weights))


# ------------------------------------------------------------------------------------ masking


def random_sequences(n=20000, seed=0):
    """Padded sequences of 5 to 40 tokens with <cls>/<sep> and some <unk> among ordinary words."""
    vocab = Vocab([f"w{i}" for i in range(60)])
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 41, (n,), generator=g)
    tokens = torch.randint(len(RESERVED), len(vocab), (n, 40), generator=g)
    tokens[torch.rand(n, 40, generator=g) < 0.05] = vocab[UNK]
    tokens[:, 0] = vocab[CLS]
    sep_at = torch.randint(2, 5, (n,), generator=g)
    tokens[torch.arange(n), sep_at] = vocab[SEP]
    tokens[torch.arange(n), lengths - 1] = vocab[SEP]
    tokens[torch.arange(40) >= lengths.unsqueeze(1)] = vocab[PAD]
    return vocab, tokens, lengths


def test_masking_statistics_on_many_sequences():
    vocab, tokens, lengths = random_sequences()
    out = mask_tokens(tokens, lengths, vocab, torch.Generator().manual_seed(0))
    special = torch.tensor(special_token_ids(vocab))
    assert set(special_token_ids(vocab)) == {vocab[t] for t in (PAD, CLS, SEP, MASK, "<bos>", "<eos>")}
    candidates = (~torch.isin(tokens, special) & (torch.arange(40) < lengths.unsqueeze(1))).sum(1)
    k = out.mlm_weights.sum(1)
    # 15 % of the ordinary tokens: each sequence floor or ceil of 0.15 n, at least 1 (so 1 when n < 7), and
    # 15 % overall where 0.15 n >= 1
    assert torch.all((k >= torch.floor(0.15 * candidates).clamp(min=1)) & (k <= torch.ceil(0.15 * candidates)))
    assert torch.all(k[candidates < 7] == 1)
    enough = candidates >= 7
    assert abs(k[enough].sum() / candidates[enough].sum() - 0.15) < 0.002
    real = out.mlm_weights > 0
    rows = torch.arange(len(tokens)).unsqueeze(1).expand_as(out.pred_positions)
    pos, row = out.pred_positions[real], rows[real]
    original = tokens[row, pos]
    assert not torch.isin(original, special).any()  # <cls>, <sep>, <pad> never chosen
    assert torch.all(pos < lengths[row])
    assert torch.all(original == out.mlm_labels[real])
    assert torch.all(out.pred_positions[:, 1:][real[:, 1:]] > out.pred_positions[:, :-1][real[:, 1:]])  # increasing
    assert torch.all(out.pred_positions[~real] == 0) and torch.all(out.mlm_labels[~real] == 0)
    # 80 % <mask>, 10 % random, 10 % unchanged
    new = out.tokens[row, pos]
    n = len(new)
    masked, unchanged = (new == vocab[MASK]).sum() / n, (new == original).sum() / n
    replaced = ((new != vocab[MASK]) & (new != original)).sum() / n
    p_same = 1 / (len(vocab) - len(special))  # a random token may be the original one
    assert abs(masked - 0.8) < 0.01
    assert abs(replaced - 0.1 * (1 - p_same)) < 0.006
    assert abs(unchanged - (0.1 + 0.1 * p_same)) < 0.006
    assert not torch.isin(new[new != vocab[MASK]], special).any()  # random tokens are ordinary ones
    # everything else untouched
    untouched = torch.ones_like(tokens, dtype=torch.bool)
    untouched[row, pos] = False
    assert torch.equal(out.tokens[untouched], tokens[untouched])


def test_masking_is_deterministic_given_a_generator():
    vocab, tokens, lengths = random_sequences(500)
    a = mask_tokens(tokens, lengths, vocab, torch.Generator().manual_seed(3))
    b = mask_tokens(tokens, lengths, vocab, torch.Generator().manual_seed(3))
    c = mask_tokens(tokens, lengths, vocab, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.tokens, c.tokens)


# ------------------------------------------------------------------------ next-sentence pairs


def test_nsp_pairs_from_the_corpus_documents(corpus):
    docs = corpus.documents("train")
    documents = [[s.en for s in doc] for doc in docs]
    pairs = nsp_pairs(documents, torch.Generator().manual_seed(0))
    assert [p.a for p in pairs] == [(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - 1)]
    for p in pairs:
        (da, ia), (db, ib) = p.a, p.b
        assert p.tokens_a == list(docs[da][ia].en) and p.tokens_b == list(docs[db][ib].en)
        if p.is_next:  # consecutive sentences of one document
            assert db == da and ib == ia + 1 and docs[db][ib].doc == docs[da][ia].doc
        else:  # a sentence of another document
            assert db != da and docs[db][ib].doc != docs[da][ia].doc
    share = sum(p.is_next for p in pairs) / len(pairs)
    assert abs(share - 0.5) < 4 * (0.25 / len(pairs)) ** 0.5, share
    other = [p.b[0] for p in pairs if not p.is_next]
    assert len(set(other)) > len(docs) / 3  # drawn across the documents, not from a few
    assert nsp_pairs(documents, torch.Generator().manual_seed(0)) == pairs
    short = nsp_pairs(documents, torch.Generator().manual_seed(0), max_len=15)
    assert short and all(len(p.tokens_a) + len(p.tokens_b) + 3 <= 15 for p in short) and len(short) < len(pairs)
    with pytest.raises(ValueError, match="2 documents"):
        nsp_pairs(documents[:1])


def test_pretraining_dataset_batches(corpus, d2l):
    ds = BERTPretrainingDataset.from_corpus(corpus, "train", max_len=64, seed=0)
    vocab = corpus.src_vocab
    assert len(ds) == len(ds.pairs) > 100
    for i in (0, 1, len(ds) - 1):
        tokens, segments, valid_len, positions, weights, labels, nsp = ds[i]
        p = ds.pairs[i]
        original, segs = get_tokens_and_segments(p.tokens_a, p.tokens_b)
        n = len(original)
        assert valid_len == n and segments[:n].tolist() == segs and nsp == int(p.is_next)
        restored = tokens.clone()
        k = int(weights.sum())
        restored[positions[:k]] = labels[:k]
        assert vocab.to_tokens(restored[:n]) == [t if t in vocab.token_to_idx else UNK for t in original]
        assert torch.all(tokens[n:] == vocab[PAD])
    batch = next(iter(ds.loader(8, seed=1)))
    assert len(batch) == 7 and all(t.shape[0] == 8 for t in batch)
    assert batch[0].shape[1] == int(batch[2].max())  # trimmed to the longest sequence
    # d2l's model and ours consume the batch alike
    net = BERTModel(len(vocab), D, F_, H, 1, 0.0, max_len=64)
    mlm_l, nsp_l, total = pretraining_loss(net, *batch)
    assert mlm_l > 0 and nsp_l > 0 and torch.isclose(total, mlm_l + nsp_l)
    theirs = d2l.BERTModel(len(vocab), D, F_, H, 1, 0.0, max_len=64)
    theirs(*batch[:2], batch[2], batch[3])
    theirs.load_state_dict(net.state_dict())
    torch.testing.assert_close(pretraining_loss(theirs, *batch)[1], nsp_l)


def test_pretraining_dataset_of_the_full_corpus_builds_quickly():
    import time

    corpus = load_corpus()
    t0 = time.perf_counter()
    ds = BERTPretrainingDataset.from_corpus(corpus, "train")
    print(f"{len(ds)} pretraining examples in {time.perf_counter() - t0:.2f} s")  # printed, not asserted
    assert len(ds) > 3000 and 0.45 < ds.nsp_labels.float().mean() < 0.55


# -------------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_heads_shapes():
    bert = BERTModel(V, D, F_, H, 2, 0.0, max_len=L)
    tokens, segments, _ = inputs()
    tagger, classifier = BERTTagger(bert, 5, copy=False), BERTClassifier(bert, 3, copy=False)
    assert tagger(tokens, segments, VALID).shape == (B, T, 5)
    assert classifier(tokens, segments, VALID).shape == (B, 3)
    assert classifier((tokens, segments, VALID)).shape == (B, 3)  # d2l's single tuple
    assert tagger.encoder is bert.encoder and classifier.hidden is bert.hidden  # pretrained parts shared


def test_encode_inputs_and_tagging():
    vocab, tags = Vocab("a b c".split()), Vocab(["N", "V"], reserved_tokens=["<unk>"])
    tokens, segments, valid = encode_inputs(vocab, [["a", "b"], ["c"]], [["c"], ["a", "b", "c"]])
    assert valid.tolist() == [6, 7] and segments[0].tolist() == [0, 0, 0, 0, 1, 1, 0]
    assert vocab.to_tokens(tokens[1]) == [CLS, "c", SEP, "a", "b", "c", SEP]
    tokens, segments, valid, labels = encode_tagging(vocab, tags, [(["a", "b"], ["N", "V"]), (["c"], ["V"])])
    assert labels.tolist() == [[IGNORE_INDEX, tags["N"], tags["V"], IGNORE_INDEX],
                               [IGNORE_INDEX, tags["V"], IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="tags"):
        encode_tagging(vocab, tags, [(["a"], ["N", "V"])])


def test_tiny_fine_tuning_overfits(corpus):
    torch.manual_seed(0)
    sentences = corpus.train[:12]
    vocab = corpus.src_vocab
    bert = BERTModel(len(vocab), 32, 64, 2, 1, 0.0, max_len=32)
    tokens, segments, valid, tags = encode_tagging(vocab, corpus.tag_vocab, [(s.en, s.tags) for s in sentences])
    topics = torch.tensor([corpus.topics.index(s.topic) for s in sentences])
    tagger, classifier = BERTTagger(bert, len(corpus.tag_vocab)), BERTClassifier(bert, len(corpus.topics))
    params = {id(p): p for p in [*tagger.parameters(), *classifier.parameters()]}.values()
    optimizer = torch.optim.Adam(params, lr=3e-3)
    for _ in range(150):
        tag_logits = tagger(tokens, segments, valid)
        loss = F.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]), tags.reshape(-1)) + \
            F.cross_entropy(classifier(tokens, segments, valid), topics)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = tagger(tokens, segments, valid).argmax(-1)
        assert torch.equal(predicted[tags != IGNORE_INDEX], tags[tags != IGNORE_INDEX])
        assert torch.equal(classifier(tokens, segments, valid).argmax(-1), topics)


def one_training_step(model, tokens, segments, valid_lens):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(tokens, segments, valid_lens).square().mean().backward()
    optimizer.step()


@pytest.mark.parametrize("seed", [0, 1])
def test_fine_tuning_heads_copy_by_default_or_share(seed):
    """copy=True (default): the head starts from the pretrained weights and training it leaves `bert` untouched;
    copy=False: the head shares the encoder (and the classifier the pooler), and training it trains `bert`."""
    tokens, segments, _ = inputs(seed)
    for make in (lambda b, **kw: BERTTagger(b, 5, **kw), lambda b, **kw: BERTClassifier(b, 3, **kw)):
        bert = randomize(BERTModel(V, D, F_, H, 2, 0.0, max_len=L), seed=seed).eval()
        before = {k: v.clone() for k, v in bert.state_dict().items()}
        head = make(bert).eval()
        shared = make(bert, copy=False).eval()
        head.output.load_state_dict(shared.output.state_dict())
        assert head.encoder is not bert.encoder and shared.encoder is bert.encoder
        assert not {id(p) for p in head.parameters()} & {id(p) for p in bert.parameters()}
        torch.testing.assert_close(head(tokens, segments, VALID), shared(tokens, segments, VALID))  # same start
        if isinstance(head, BERTClassifier):
            assert head.hidden is not bert.hidden and shared.hidden is bert.hidden
        one_training_step(head.train(), tokens, segments, VALID)
        assert all(torch.equal(v, before[k]) for k, v in bert.state_dict().items())  # the copy trained, not bert
        assert not torch.equal(head.encoder.token_embedding.weight, bert.encoder.token_embedding.weight)
        one_training_step(shared.train(), tokens, segments, VALID)
        assert not torch.equal(bert.encoder.token_embedding.weight, before["encoder.token_embedding.weight"])
        with pytest.raises(ValueError, match="copy"):
            make(bert, copy="no")


def hf_ready(seed=0, **options):
    """A course BERTModel that Hugging Face's BERT can express, every parameter perturbed."""
    kwargs = dict(num_segments=2, activation="gelu", eps=1e-12, embedding_norm=True, tie_weights=True)
    kwargs.update(options)
    torch.manual_seed(seed)
    return randomize(BERTModel(V, D, F_, H, 2, 0.1, max_len=L, **kwargs), seed=seed, scale=0.2)


HF_OPTIONS = [{}, {"tie_weights": False}, {"activation": "relu", "eps": 1e-5, "num_segments": 3},
              {"tie_weights": False, "activation": "relu", "eps": 1e-6}]


@pytest.mark.parametrize("options", HF_OPTIONS)
def test_to_huggingface_then_back_is_the_identity(options):
    pytest.importorskip("transformers")
    ours = hf_ready(**options).eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    theirs = to_huggingface(ours)
    assert type(theirs).__name__ == "BertForPreTraining" and not theirs.training
    assert theirs.config.tie_word_embeddings == ours.tie_weights
    back = from_huggingface(theirs)
    assert back.config == ours.config and back.tie_weights == ours.tie_weights and not back.training
    assert set(back.state_dict()) == set(ours.state_dict())
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
        assert torch.equal(v, before[k]), f"{k} changed by the conversion"
    assert {blk.attention.attention.dropout_p for blk in back.encoder.blks} == {0.1}
    # the converted model shares no tensor with ours
    ours_ptrs = {p.data_ptr() for p in ours.parameters()}
    assert not ours_ptrs & {p.data_ptr() for p in theirs.parameters()}
    train = to_huggingface(ours.train())
    assert train.training and all(m.training for m in train.modules())


def hf_outputs(theirs, tokens, segments, valid_lens):
    attention_mask = (torch.arange(tokens.shape[1]) < valid_lens.unsqueeze(1)).long()
    with torch.no_grad():
        return theirs(input_ids=tokens, token_type_ids=segments, attention_mask=attention_mask,
                      output_hidden_states=True)


@pytest.mark.parametrize("options", HF_OPTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_to_huggingface_computes_what_ours_computes(options, seed):
    """Random weights, biases and LayerNorms perturbed: hidden states, MLM and NSP logits agree at real positions."""
    pytest.importorskip("transformers")
    ours = hf_ready(seed, **options).eval()
    tokens, segments, _ = inputs(seed)
    segments = segments * (ours.encoder.segment_embedding.num_embeddings - 1)
    theirs = to_huggingface(ours)
    masked_lm = to_huggingface(ours, head="masked_lm")
    assert type(masked_lm).__name__ == "BertForMaskedLM" and masked_lm.bert.pooler is None
    out, mlm_out = hf_outputs(theirs, tokens, segments, VALID), hf_outputs(masked_lm, tokens, segments, VALID)
    all_positions = torch.arange(T).expand(B, T)
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        with torch.no_grad():
            encoded, mlm, nsp = ours(tokens, segments, VALID, all_positions)
        for b, n in enumerate(VALID.tolist()):  # padded positions are free to differ
            for got in (out.hidden_states[-1], mlm_out.hidden_states[-1]):
                torch.testing.assert_close(got[b, :n], encoded[b, :n], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out.prediction_logits[b, :n], mlm[b, :n], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(mlm_out.logits[b, :n], mlm[b, :n], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.seq_relationship_logits, nsp, atol=1e-5, rtol=1e-4)


def test_to_huggingface_comparison_sees_a_swapped_tensor():
    """The comparison above can fail: swap the query and key projections of one layer, or the two LayerNorms'
    biases, and the outputs differ by far more than the tolerance."""
    pytest.importorskip("transformers")
    ours = hf_ready(2).eval()
    tokens, segments, _ = inputs(2)
    with torch.no_grad():
        encoded = ours(tokens, segments, VALID)[0]
    for swap in ("query/key", "layernorm biases", "embedding norm"):
        theirs = to_huggingface(ours)
        layer = theirs.bert.encoder.layer[1]
        with torch.no_grad():
            if swap == "query/key":
                q, k = layer.attention.self.query.weight, layer.attention.self.key.weight
                q_old = q.clone()
                q.copy_(k)
                k.copy_(q_old)
            elif swap == "layernorm biases":
                a, b = layer.attention.output.LayerNorm.bias, layer.output.LayerNorm.bias
                a_old = a.clone()
                a.copy_(b)
                b.copy_(a_old)
            else:
                theirs.bert.embeddings.LayerNorm.weight.fill_(1.0)
        got = hf_outputs(theirs, tokens, segments, VALID).hidden_states[-1]
        assert (got[0, :9] - encoded[0, :9]).abs().max() > 1e-2, swap


def test_to_huggingface_keeps_dtype_and_device():
    pytest.importorskip("transformers")
    ours = hf_ready(3).double().eval()
    theirs = to_huggingface(ours)
    assert all(p.dtype == torch.float64 for p in theirs.parameters())
    tokens, segments, _ = inputs(3)
    with torch.no_grad():
        encoded, _, nsp = ours(tokens, segments, VALID)
    out = hf_outputs(theirs, tokens, segments, VALID)
    torch.testing.assert_close(out.hidden_states[-1][0], encoded[0], atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(out.seq_relationship_logits, nsp, atol=1e-10, rtol=1e-9)


def test_to_huggingface_refuses_what_bert_cannot_express():
    """Options the original BERT lacks raise a ValueError naming them; the model is left unchanged."""
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="embedding_norm=False"):
        to_huggingface(BERTModel(V, D, F_, H, 1, 0.0, max_len=L))  # the course's small BERT (d2l's defaults)

    def broken(how):
        model = hf_ready(4)
        blk = model.encoder.blks[1]
        if how == "norm_first":
            blk.norm_first = True
        elif how == "use_bias":
            blk.attention.W_k.register_parameter("bias", None)
        elif how == "eps":
            blk.addnorm2.ln.eps = 1e-3
        elif how == "dropout":
            blk.attention.attention.dropout_p = 0.5
        elif how == "activation":
            blk.ffn.activation = "relu"
            blk.ffn.relu = nn.ReLU()
        return model

    for how in ("norm_first", "use_bias", "eps", "dropout", "activation"):
        model = broken(how)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError, match=how):
            to_huggingface(model)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="head"):
        to_huggingface(hf_ready(), head="classifier")
    with pytest.raises(TypeError, match="BERTModel"):
        to_huggingface(hf_ready().encoder)


def test_to_huggingface_needs_transformers_only_when_called():
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None  # any import of transformers now fails\n"
        "from course_lib.bert import BERTModel, to_huggingface\n"
        "model = BERTModel(10, 8, 16, 2, 1, 0.0, embedding_norm=True)\n"
        "try:\n"
        "    to_huggingface(model)\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
    )
    _prints_import_error(code)


# ------------------------------------------------------------------------ distributed training


def test_torchrun_two_processes_match_one(tmp_path):
    """2 CPU processes (gloo) with DDP give the losses of 1 process with the same global batch."""
    from course_lib import pretrain_bert

    args = ["--num-sentences", "500", "--steps", "5", "--batch-size", "8", "--dropout", "0", "--num-hiddens", "16",
            "--ffn-num-hiddens", "32", "--num-heads", "2", "--num-blks", "1", "--optimizer", "sgd", "--lr", "0.5",
            "--device", "cpu", "--log-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    two = tmp_path / "two.json"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "course_lib.pretrain_bert", *args, "--losses", str(two)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = pretrain_bert.main([*args, "--losses", str(tmp_path / "one.json")])
    result = json.loads(two.read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo" and one["world_size"] == 1
    assert len(result["losses"]) == len(one["losses"]) == 5
    for a, b in zip(result["losses"], one["losses"]):
        assert a["step"] == b["step"]
        assert a["mlm"] == pytest.approx(b["mlm"], rel=1e-5) and a["nsp"] == pytest.approx(b["nsp"], rel=1e-5)
    first, last = one["losses"][0], one["losses"][-1]
    assert last["mlm"] != first["mlm"]  # it trained


def test_wikitext2_path_offline(tmp_path, monkeypatch):
    """load_pretraining_data(source="wikitext2") and pretrain_bert --data wikitext2, on a file in WikiText-2's
    layout (the download and its hash are tested in test_datasets): paragraphs become documents, rare tokens
    stay out of the vocabulary, and a short pretraining runs."""
    from course_lib import datasets, pretrain_bert

    words = "the a river bank money city game was is of in and to sold released".split()
    g = torch.Generator().manual_seed(0)
    lines = [" = Heading = "]                                       # one sentence: not a document
    for p in range(30):
        sentences = [" ".join(words[i] for i in torch.randint(len(words), (6,), generator=g).tolist())
                     for _ in range(2 + p % 3)]
        lines.append(" . ".join(sentences) + " . ")
    lines.append("zyzzyva appears once . and only here . ")        # a rare token
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "wiki.train.tokens").write_text("\n".join(lines), encoding="utf-8")
    calls = []

    def offline(split="train", folder=None):
        calls.append(split)
        return datasets.read_wikitext2(tmp_path, split)

    monkeypatch.setattr(datasets, "load_wikitext2", offline)
    paragraphs = datasets.read_wikitext2(tmp_path, "train")
    assert len(paragraphs) == 31                                     # the heading is dropped
    loader, vocab = load_pretraining_data(batch_size=4, max_len=32, source="wikitext2")
    assert calls == ["train"]
    assert "zyzzyva" not in vocab.token_to_idx and vocab["zyzzyva"] == vocab[UNK]
    assert all(w in vocab.token_to_idx for w in words)
    assert len(loader.dataset) == sum(len(p) - 1 for p in paragraphs)  # one pair per sentence with a successor
    tokens, segments, valid_lens, positions, weights, labels, nsp = next(iter(loader))
    assert tokens.shape[0] == 4 and tokens.shape[1] <= 32 and (tokens[:, 0] == vocab[CLS]).all()
    assert set(nsp.tolist()) <= {0, 1} and (weights.sum(1) > 0).all()
    result = pretrain_bert.main(["--data", "wikitext2", "--steps", "3", "--batch-size", "4", "--max-len", "32",
                                 "--num-hiddens", "16", "--ffn-num-hiddens", "32", "--num-heads", "2",
                                 "--num-blks", "1", "--device", "cpu", "--log-every", "1"])
    assert calls == ["train", "train"] and result["examples"] == len(loader.dataset)
    assert len(result["losses"]) == 3 and all(math.isfinite(l["mlm"]) and math.isfinite(l["nsp"]) for l in result["losses"])


# ----------------------------------------------------------------- bad input, nothing silently wrong


def test_masked_lm_loss_skips_hugging_face_ignored_labels():
    """A label of -100 (no target) does not count, whatever its weight: the mean is over the real targets only
    (it used to divide their loss by the number of slots)."""
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 4, V), torch.randint(0, V, (3, 4))
    ignored = torch.tensor([[False, True, False, True], [True, True, True, True], [False, False, False, True]])
    hf_labels = labels.masked_fill(ignored, IGNORE_INDEX)
    expected = F.cross_entropy(logits[~ignored], labels[~ignored])  # PyTorch's own mean over the kept targets
    torch.testing.assert_close(masked_lm_loss(logits, hf_labels, torch.ones(3, 4)), expected)
    torch.testing.assert_close(masked_lm_loss(logits, hf_labels), expected)  # weights=None: 1 everywhere
    torch.testing.assert_close(masked_lm_loss(logits, hf_labels, None, "sum"), expected * (~ignored).sum())
    torch.testing.assert_close(F.cross_entropy(logits.reshape(-1, V), hf_labels.reshape(-1)), expected)  # as HF
    nothing = masked_lm_loss(logits.requires_grad_(), torch.full((3, 4), IGNORE_INDEX))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_prediction_positions_and_segments_out_of_range_are_refused():
    model = BERTModel(V, D, F_, H, 1, 0.0, max_len=L).eval()
    tokens, segments, positions = inputs(0)
    _, mlm, _ = model(tokens, segments, VALID, positions)
    last = positions.clone()
    last[1, 2] = T - 1
    with torch.no_grad():
        expected = model(tokens, segments, VALID, last)[1][1, 2]
    negative = positions.clone()
    negative[1, 2] = -1  # used to read position T - 1, from the end
    with pytest.raises(ValueError, match=rf"prediction positions must be in \[0, {T}\) .*got -1 at batch 1, position 2"):
        model(tokens, segments, VALID, negative)
    assert torch.equal(model(tokens, segments, VALID, last)[1][1, 2], expected)
    bad = segments.clone()
    bad[2, 7] = 2
    with pytest.raises(ValueError, match=r"segments must be in \[0, 2\) \(num_segments=2\), got 2 at batch 2, position 7"):
        model(tokens, bad, VALID)
    with pytest.raises(ValueError, match="integer segment ids"):
        model(tokens, segments.float(), VALID)
    three = BERTModel(V, D, F_, H, 1, 0.0, max_len=L, num_segments=3).eval()
    three(tokens, bad, VALID)  # a third segment exists there


def test_vocabularies_without_the_special_tokens_are_refused():
    """<cls>, <sep> and <mask> would silently become <unk> (a masked position indistinguishable from a rare word)."""
    documents = [[["a", "b", "c"], ["d", "e"], ["f", "g"]], [["b", "a"], ["c", "d", "e"]]]
    words = [t for doc in documents for s in doc for t in s]
    bare = Vocab(words, reserved_tokens=[PAD, UNK])
    with pytest.raises(ValueError, match="lacks <cls>, <sep>, <mask>"):
        BERTPretrainingDataset(documents, bare)
    with pytest.raises(ValueError, match="lacks <mask>"):
        mask_tokens(torch.tensor([[2, 3, 4]]), torch.tensor([3]), bare)
    data = BERTPretrainingDataset(documents, Vocab(words))
    assert data.vocab[MASK] != data.vocab[UNK] and (data.tokens[:, 0] == data.vocab[CLS]).all()


def test_one_sentence_documents_are_named_as_the_problem():
    with pytest.raises(ValueError, match="documents of 2 or more sentences"):
        BERTPretrainingDataset([[["a", "b"]], [["c", "d"]], [["e"]]], Vocab("a b c d e".split()), max_len=64)


def test_from_huggingface_refuses_a_task_head_instead_of_dropping_it():
    transformers, cfg = hf_config()
    for cls, head in (("BertForSequenceClassification", "classifier"), ("BertForTokenClassification", "classifier"),
                      ("BertForQuestionAnswering", "qa_outputs")):
        theirs = getattr(transformers, cls)(cfg)
        with pytest.raises(ValueError, match=rf"{cls} has a fine-tuned head \({head}\).*pass model.bert"):
            from_huggingface(theirs)
        encoder_only = from_huggingface(theirs.bert)  # what the message suggests works
        assert isinstance(encoder_only, BERTModel)
    from_huggingface(transformers.BertForMaskedLM(cfg))
    from_huggingface(transformers.BertForNextSentencePrediction(cfg))


def test_tied_bert_refuses_an_untied_state_dict(d2l):
    tied = BERTModel(V, D, F_, H, 1, 0.0, L, tie_weights=True)
    before = tied.encoder.token_embedding.weight.detach().clone()
    theirs = d2l.BERTModel(V, D, F_, H, 1, 0.0, L)
    theirs(*inputs()[:2], VALID, inputs()[2])  # materialize d2l's lazy layers
    d2l_state = theirs.state_dict()  # d2l's MLM output layer is its own matrix
    with pytest.raises(ValueError, match="'encoder.token_embedding.weight' and 'mlm.mlp.3.weight'.*tie_weights=False"):
        tied.load_state_dict(d2l_state)
    assert torch.equal(tied.encoder.token_embedding.weight, before)  # untouched
    untied = BERTModel(V, D, F_, H, 1, 0.0, L)
    untied.load_state_dict(d2l_state)  # what the message suggests
    copy = BERTModel(V, D, F_, H, 1, 0.0, L, tie_weights=True)
    copy.load_state_dict(tied.state_dict())
    assert copy.tie_weights and torch.equal(copy.mlm.mlp[3].weight, tied.mlm.mlp[3].weight)


def trim_oracle(la, lb, max_len):
    """The lengths the chapter's rule leaves, in closed form: the shorter text stays whole if it fits in half the
    room; otherwise both get half (a the larger half, as b loses ties)."""
    if lb is None:
        return min(la, max_len - 2), None
    room = max_len - 3
    if la + lb <= room:
        return la, lb
    short = min(la, lb)
    if 2 * short <= room:
        return (la, room - la) if la == short else (room - lb, lb)
    return (room + 1) // 2, room // 2


def test_trim_pair_keeps_the_start_of_each_text_and_follows_the_rule():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        la, lb, max_len = (int(x) for x in torch.randint(0, 30, (3,), generator=g))
        max_len += 5
        one = bool(torch.randint(0, 4, (1,), generator=g) == 0)
        a, b = [f"a{i}" for i in range(la)], None if one else [f"b{i}" for i in range(lb)]
        a_in, b_in = list(a), None if b is None else list(b)
        ta, tb = trim_pair(a, b, max_len)
        assert a == a_in and b == b_in  # inputs unchanged
        assert (len(ta), None if tb is None else len(tb)) == trim_oracle(la, None if one else lb, max_len)
        assert ta == a[: len(ta)] and (tb is None or tb == b[: len(tb)])
        tokens, _ = get_tokens_and_segments(ta, tb)
        assert len(tokens) <= max_len
    assert trim_pair(["a1", "a2", "a3"], ["b1"], 6) == (["a1", "a2"], ["b1"])  # homework 6's example


def test_nsp_pairs_trim_long_pairs_instead_of_dropping_them():
    g = torch.Generator().manual_seed(0)
    documents = [[[f"w{int(i)}" for i in torch.randint(0, 50, (int(n),), generator=g)]
                  for n in torch.randint(1, 30, (5,), generator=g)] for _ in range(20)]
    full = nsp_pairs(documents, torch.Generator().manual_seed(1))
    dropped = nsp_pairs(documents, torch.Generator().manual_seed(1), max_len=24)
    trimmed = nsp_pairs(documents, torch.Generator().manual_seed(1), max_len=24, trim=True)
    assert len(trimmed) == len(full) > len(dropped)  # nothing left out; dropping biases towards short sentences
    for f, t in zip(full, trimmed):  # the same draws, each pair trimmed to fit
        assert (f.a, f.b, f.is_next) == (t.a, t.b, t.is_next)
        assert (t.tokens_a, t.tokens_b) == trim_pair(f.tokens_a, f.tokens_b, 24)
    data = BERTPretrainingDataset(documents, Vocab(t for d in documents for s in d for t in s), max_len=24,
                                  trim_pairs=True)
    assert len(data) == len(full) and int(data.valid_lens.max()) <= 24


# ----------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("options", [{}, dict(tie_weights=True, embedding_norm=True, activation="gelu", eps=1e-12,
                                              num_segments=3)])
def test_save_and_load_pretrained_round_trip(tmp_path, options):
    vocab = Vocab("the cat saw a bat near the bank".split())
    model = randomize(BERTModel(len(vocab), D, F_, H, 2, 0.1, 12, **options), seed=3)
    path = tmp_path / "sub" / "bert.pt"
    path.parent.mkdir()
    save_pretrained(model, vocab, path, extra={"steps": 7})
    assert sorted(p.name for p in path.parent.iterdir()) == ["bert.pt"]  # no temporary file left
    loaded, loaded_vocab = load_pretrained(path)
    assert loaded_vocab.idx_to_token == vocab.idx_to_token and loaded.config == model.config
    assert not loaded.training and loaded.tie_weights == model.tie_weights
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    tokens = torch.randint(0, len(vocab), (2, 6), generator=torch.Generator().manual_seed(0))
    segments = torch.zeros_like(tokens)
    segments[:, 3:] = 1
    with torch.no_grad():
        for a, b in zip(model.eval()(tokens, segments, torch.tensor([6, 4]), torch.tensor([[1, 2], [3, 0]])),
                        loaded(tokens, segments, torch.tensor([6, 4]), torch.tensor([[1, 2], [3, 0]]))):
            assert torch.equal(a, b)
    assert torch.load(path, weights_only=True)["extra"] == {"steps": 7}


def test_an_interrupted_save_keeps_the_earlier_file(tmp_path, monkeypatch):
    vocab = Vocab("a b c".split())
    model = BERTModel(len(vocab), D, F_, H, 1, 0.0, 8)
    path = tmp_path / "bert.pt"
    save_pretrained(model, vocab, path)
    earlier = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, vocab, path, overwrite=True)
    assert path.read_bytes() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["bert.pt"]


def test_an_existing_checkpoint_is_replaced_only_when_asked(tmp_path):
    """No overwriting without asking: an earlier file stays as it is unless overwrite=True."""
    vocab = Vocab("a b c".split())
    first = randomize(BERTModel(len(vocab), D, F_, H, 1, 0.0, 8), seed=1)
    second = randomize(BERTModel(len(vocab), D, F_, H, 1, 0.0, 8), seed=2)
    path = tmp_path / "bert.pt"
    save_pretrained(first, vocab, path)
    earlier = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"bert.pt' already exists; it was left as it is.*overwrite=True"):
        save_pretrained(second, vocab, path)
    assert path.read_bytes() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["bert.pt"]
    link = tmp_path / "link.pt"
    link.symlink_to(tmp_path / "nowhere.pt")  # a dangling link is something the user made, too
    with pytest.raises(FileExistsError):
        save_pretrained(second, vocab, link)
    assert link.is_symlink() and not (tmp_path / "nowhere.pt").exists()
    with pytest.raises(ValueError, match="overwrite must be True or False, got 1"):
        save_pretrained(second, vocab, path, overwrite=1)
    save_pretrained(second, vocab, path, overwrite=True)
    loaded, _ = load_pretrained(path)
    for k, v in second.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_a_file_that_appears_during_the_save_is_not_replaced(tmp_path, monkeypatch):
    """The check and the write are one step (a hard link, which fails if the name is taken)."""
    vocab = Vocab("a b c".split())
    model = BERTModel(len(vocab), D, F_, H, 1, 0.0, 8)
    path = tmp_path / "bert.pt"
    real_save = torch.save

    def save_while_another_appears(obj, f, *args, **kwargs):
        path.write_bytes(b"another run's checkpoint")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_while_another_appears)
    with pytest.raises(FileExistsError, match="already exists"):
        save_pretrained(model, vocab, path)
    assert path.read_bytes() == b"another run's checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.pt"]  # no temporary file left


def test_saved_files_get_the_usual_permissions(tmp_path):
    """A temporary file is private (0o600); the saved file is readable as any file open() creates."""
    vocab = Vocab("a b c".split())
    old = os.umask(0o022)
    try:
        save_pretrained(BERTModel(len(vocab), D, F_, H, 1, 0.0, 8), vocab, tmp_path / "bert.pt")
        vocab.save(tmp_path / "vocab.json")
        os.umask(0o077)
        vocab.save(tmp_path / "private.json")
    finally:
        os.umask(old)
    assert (tmp_path / "bert.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "vocab.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA")
def test_loading_onto_a_missing_gpu_names_map_location_not_the_file(tmp_path):
    vocab = Vocab("a b c".split())
    save_pretrained(BERTModel(len(vocab), D, F_, H, 1, 0.0, 8), vocab, tmp_path / "bert.pt")
    with pytest.raises(ValueError, match="map_location='cuda', but CUDA is not available here.*map_location='cpu'"):
        load_pretrained(tmp_path / "bert.pt", map_location="cuda")
    with pytest.raises(ValueError, match="map_location='meta' holds no values"):
        load_pretrained(tmp_path / "bert.pt", map_location="meta")
    model, _ = load_pretrained(tmp_path / "bert.pt", map_location=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def _prints_import_error(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit cleanly after printing 'ImportError'."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ImportError"
