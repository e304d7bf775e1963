"""Chapter 6: BERT's inputs and pretraining data (Devlin et al., 2019).

Shape legend: B batch, T positions (``max_len``), P prediction positions per sequence.

**Input.** One text or a pair: ``<cls> a ... <sep> b ... <sep>`` with segment 0 for
``<cls>``, the first text and its ``<sep>``, segment 1 for the second text and its
``<sep>`` (:func:`get_tokens_and_segments`); :func:`encode_inputs` and
:func:`encode_tagging` build the batches of the fine-tuning heads
(``course_lib.bert.BERTClassifier``, ``BERTTagger``).

**Pretraining data.** :func:`nsp_pairs` draws next-sentence pairs from documents (50 %
the true next sentence, 50 % a random sentence of another document), leaving out the
pairs longer than ``max_len`` or, with ``trim=True``, trimming them (:func:`trim_pair`:
the longer text loses its last token until the pair fits); :func:`mask_tokens`
chooses 15 % of the ordinary tokens to predict and replaces 80 % of those by ``<mask>``,
10 % by a random token and leaves 10 % unchanged; :class:`BERTPretrainingDataset` (or
:func:`load_pretraining_data`, or :func:`wikitext2_dataset`) puts both together into
d2l-style batches ``(tokens, segments, valid_lens, pred_positions, mlm_weights,
mlm_labels, nsp_labels)``, which ``course_lib.bert_losses`` turns into losses.

**Inputs** are checked with an error that names the argument: texts as lists of tokens,
never a str; vocabularies that hold the reserved tokens used (``<cls>``, ``<sep>``,
``<mask>``, ``<pad>``), which would otherwise silently become ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from course_lib._checks import check_bool, check_index_range, check_lengths, check_tokens_not_text, check_vocab_has
from course_lib.text import CLS, MASK, PAD, RESERVED, SEP, UNK, Vocab
from course_lib.transformer import _check_bool, _check_int, _check_tokens

IGNORE_INDEX = -100  #: label of positions without a target (F.cross_entropy's default ignore_index)


def get_tokens_and_segments(tokens_a: Sequence[str], tokens_b: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
    """BERT's input for one text or a pair: ``<cls> a <sep> [b <sep>]`` and its segment ids.

    Segment 0 covers ``<cls>``, ``tokens_a`` and the first ``<sep>``; segment 1 covers
    ``tokens_b`` and the last ``<sep>``. The texts are lists of tokens (a str is refused).
    """
    check_tokens_not_text("tokens_a", tokens_a)
    check_tokens_not_text("tokens_b", tokens_b)
    tokens, segments = [CLS, *tokens_a, SEP], [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += [*tokens_b, SEP]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def trim_pair(tokens_a: Sequence[str], tokens_b: Sequence[str] | None, max_len: int) -> tuple[list[str], list[str] | None]:
    """Copies of the texts, trimmed so that BERT's input (``<cls>``, ``<sep>`` tokens included) has at most ``max_len`` tokens.

    The rule of the original BERT and of chapter 6: while the input is too long, the
    longer text loses its last token (``tokens_b`` when both are equally long). This
    keeps as much of both texts as possible, and the start of each. ``max_len`` must
    leave room for one token of each text: at least 5 for a pair, 3 for one text.
    """
    check_tokens_not_text("tokens_a", tokens_a)
    check_tokens_not_text("tokens_b", tokens_b)
    a, b = list(tokens_a), None if tokens_b is None else list(tokens_b)
    _check_int("max_len", max_len, minimum=3 if b is None else 5)
    room = max_len - (2 if b is None else 3)  # what <cls> and the <sep> tokens leave
    while len(a) + (0 if b is None else len(b)) > room:
        if b is not None and len(b) >= len(a):
            b.pop()
        else:
            a.pop()
    return a, b



# ------------------------------------------------------------------------------ pretraining data


class NSPPair(NamedTuple):
    """One next-sentence example and where its sentences come from."""

    tokens_a: list[str]
    tokens_b: list[str]
    is_next: bool  #: True: b is the sentence after a in a's document
    a: tuple[int, int]  #: (document, sentence) of a
    b: tuple[int, int]  #: (document, sentence) of b


def _check_documents(documents: object) -> None:
    check_tokens_not_text("documents", documents)
    for d, doc in enumerate(documents):  # type: ignore[attr-defined]
        if isinstance(doc, str):
            raise TypeError(f"documents must be lists of sentences, each a list of tokens; document {d} is a str")
        for i, sentence in enumerate(doc):
            check_tokens_not_text(f"sentence {i} of document {d}", sentence)


def nsp_pairs(
    documents: Sequence[Sequence[Sequence[str]]],
    generator: torch.Generator | None = None,
    max_len: int | None = None,
    trim: bool = False,
) -> list[NSPPair]:
    """Next-sentence pairs from documents (each a list of token lists).

    Every sentence that has a next one in its document starts one pair; with probability
    1/2 the second sentence is that next one (``is_next``), otherwise a sentence drawn
    uniformly from a document drawn uniformly among the *other* documents. Pairs whose
    BERT input (``<cls>``, both sentences, two ``<sep>``) is longer than ``max_len`` are
    left out, or with ``trim=True`` trimmed to fit (:func:`trim_pair`, the original BERT's
    rule: dropping them would bias the data towards short sentences). Deterministic
    given ``generator``. Needs at least 2 documents, one of them with 2 sentences or more.
    """
    _check_documents(documents)
    if len(documents) < 2:
        raise ValueError(f"next-sentence pairs need at least 2 documents, got {len(documents)}")
    if all(len(doc) < 2 for doc in documents):
        raise ValueError(f"next-sentence pairs need documents of 2 or more sentences (a sentence and the next one), "
                         f"but all {len(documents)} documents have fewer")
    if max_len is not None:
        _check_int("max_len", max_len, minimum=5 if trim else 1)
    _check_bool("trim", trim)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    starts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    n = len(starts)
    coins = torch.rand(n, generator=g).tolist()  # < 0.5: the true next sentence
    other_docs = torch.randint(0, len(documents) - 1, (n,), generator=g).tolist()  # skips a's own document
    other_sents = torch.rand(n, generator=g).tolist()  # uniform in [0, 1): a sentence of that document
    pairs = []
    for (d, i), coin, od, u in zip(starts, coins, other_docs, other_sents):
        if coin < 0.5:
            b = (d, i + 1)
        else:
            od = od + (od >= d)  # 0 .. n_docs - 2 mapped onto the documents other than d
            b = (od, min(int(u * len(documents[od])), len(documents[od]) - 1))
        tokens_a, tokens_b = list(documents[d][i]), list(documents[b[0]][b[1]])
        if max_len is not None and len(tokens_a) + len(tokens_b) + 3 > max_len:
            if not trim:
                continue
            tokens_a, tokens_b = trim_pair(tokens_a, tokens_b, max_len)
        pairs.append(NSPPair(tokens_a, tokens_b, coin < 0.5, (d, i), b))
    return pairs


class MLMData(NamedTuple):
    """Inputs and targets of masked language modeling for N sequences."""

    tokens: Tensor  #: (N, T) the input, with the chosen positions replaced
    pred_positions: Tensor  #: (N, P) chosen positions in increasing order, padded with 0
    mlm_weights: Tensor  #: (N, P) float, 1 for a real prediction, 0 for padding
    mlm_labels: Tensor  #: (N, P) the original tokens at the chosen positions, padded with 0


def special_token_ids(vocab: Vocab) -> list[int]:
    """Ids never chosen for prediction nor drawn as random replacements: the reserved tokens but ``<unk>``."""
    check_vocab_has(vocab, (), "special_token_ids")
    return [vocab.token_to_idx[t] for t in RESERVED if t != UNK and t in vocab.token_to_idx]


def mask_tokens(
    tokens: Tensor,
    valid_lens: Tensor,
    vocab: Vocab,
    generator: torch.Generator | None = None,
    ratio: float = 0.15,
    num_preds: int | None = None,
) -> MLMData:
    """Choose and corrupt the positions to predict in padded sequences ``tokens`` (N, T).

    Candidates are the positions before ``valid_lens`` whose token is not special
    (``<cls>``, ``<sep>``, ``<pad>`` and the other reserved tokens but ``<unk>``). A
    sequence with n candidates gets k = floor(ratio n + u) predictions (u uniform in
    [0, 1): so k is ratio n on average, never off by more than one), at least one and
    at most n, at positions drawn uniformly without replacement. Of the chosen tokens,
    80 % become ``<mask>``, 10 % an ordinary token drawn uniformly (never a reserved
    one; it may happen to be the original) and 10 % stay unchanged. ``num_preds``, the
    width P of the outputs, defaults to the largest k. Deterministic given
    ``generator``; vectorized (a few milliseconds for thousands of sequences).

    ``tokens`` are ids of ``vocab`` (which must hold ``<mask>``), ``valid_lens`` (N,)
    lengths in [0, T], ``num_preds`` None or an int >= 1.
    """
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio!r}")
    check_vocab_has(vocab, (MASK,), "mask_tokens")
    _check_tokens(tokens, "mask_tokens", len(vocab))
    N, T = tokens.shape
    if not isinstance(valid_lens, Tensor) or valid_lens.numel() != N or valid_lens.dtype.is_floating_point:
        raise ValueError(f"valid_lens must be an integer tensor of N = {N} lengths, got "
                         f"{getattr(valid_lens, 'shape', valid_lens)!r} {getattr(valid_lens, 'dtype', '')}")
    check_lengths(valid_lens.reshape(-1), 0, T, "valid_lens", f"T = {T} positions")
    if num_preds is not None:
        _check_int("num_preds", num_preds)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    special = torch.tensor(special_token_ids(vocab), dtype=tokens.dtype)
    in_range = torch.arange(T).unsqueeze(0) < valid_lens.reshape(-1, 1).to(torch.long)  # (N, T)
    candidate = in_range & ~torch.isin(tokens, special)  # (N, T)
    n = candidate.sum(dim=1)  # (N,)
    k = torch.floor(ratio * n + torch.rand(N, generator=g)).to(torch.long).clamp(min=1)
    k = torch.minimum(k, n)  # (N,)
    # A random order of the candidates: uniform scores, non-candidates last.
    scores = torch.where(candidate, torch.rand(N, T, generator=g), torch.full((N, T), 2.0))
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank[i, t]: place of position t in sequence i's order
    chosen = rank < k.unsqueeze(1)  # (N, T): the first k candidates
    k_max = int(k.max()) if N else 0
    P = max(1, k_max) if num_preds is None else num_preds
    if k_max > P:
        raise ValueError(f"num_preds={P} is smaller than the {k_max} predictions of some sequence")
    # The chosen positions in increasing order: chosen ones first (stable sort of ~chosen).
    positions = (~chosen).to(torch.int8).argsort(dim=1, stable=True)[:, :P]  # (N, P)
    weights = (torch.arange(P).unsqueeze(0) < k.unsqueeze(1)).to(torch.float32)  # (N, P)
    positions = torch.where(weights > 0, positions, torch.zeros_like(positions))
    labels = torch.where(weights > 0, tokens.gather(1, positions), torch.zeros_like(positions))
    # 80 / 10 / 10: <mask>, a random ordinary token, unchanged.
    u = torch.rand(N, P, generator=g)
    every_id = torch.arange(len(vocab), dtype=tokens.dtype)
    ordinary = every_id[~torch.isin(every_id, special)]  # (V - reserved,) in increasing order
    if len(ordinary) == 0:
        raise ValueError(f"the vocabulary has no ordinary token to draw random replacements from: {vocab.idx_to_token}")
    random_tokens = ordinary[torch.randint(0, len(ordinary), (N, P), generator=g)]
    replacement = torch.where(u < 0.8, torch.full_like(labels, vocab[MASK]), torch.where(u < 0.9, random_tokens, labels))
    corrupted = tokens.clone()
    real = weights > 0
    rows = torch.arange(N).unsqueeze(1).expand(N, P)
    corrupted[rows[real], positions[real]] = replacement[real]
    return MLMData(corrupted, positions, weights, labels)


def _pad(rows: Sequence[Sequence[int]], width: int, value: int) -> Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


class BERTPretrainingDataset(Dataset):
    """Masked-language-model and next-sentence examples from documents, d2l-style.

    ``BERTPretrainingDataset(documents, vocab, max_len=64, seed=0)``: ``documents`` is a
    list of documents, each a list of sentences, each a list of tokens. Pairs come from
    :func:`nsp_pairs`, masking from :func:`mask_tokens`, both drawn once, from one
    ``torch.Generator`` seeded with ``seed`` (the same dataset on every process). Item i
    is d2l's 7-tuple ``(tokens (L,), segments (L,), valid_len (), pred_positions (P,),
    mlm_weights (P,), mlm_labels (P,), nsp_label ())``, padded to ``max_len`` = L;
    ``loader`` trims each batch to its longest sequence. ``pairs`` keeps each example's
    sentences and where they come from. :meth:`from_corpus` reads the course corpus.

    Pairs longer than ``max_len`` are left out, or with ``trim_pairs=True`` trimmed to fit
    (:func:`trim_pair`). ``vocab`` must hold ``<pad>``, ``<cls>``, ``<sep>`` and ``<mask>``
    (a :class:`course_lib.text.Vocab` built with its default reserved tokens does).
    For new pairs and a new masking at every pass over the data (RoBERTa's dynamic
    masking, as chapter 6 trains), build the data set again with another ``seed``.
    """

    def __init__(self, documents: Sequence[Sequence[Sequence[str]]], vocab: Vocab, max_len: int = 64, seed: int = 0,
                 ratio: float = 0.15, trim_pairs: bool = False) -> None:
        _check_int("max_len", max_len, minimum=5 if trim_pairs else 4)
        _check_int("seed", seed, minimum=0)
        check_vocab_has(vocab, (PAD, CLS, SEP, MASK), "BERTPretrainingDataset")
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.max_len = vocab, max_len
        self.pairs = nsp_pairs(documents, g, max_len, trim=trim_pairs)
        if not self.pairs:
            raise ValueError(f"no sentence pair fits max_len={max_len} (every pair of sentences is longer, <cls> and "
                             "two <sep> included); raise max_len or pass trim_pairs=True")
        cls_, sep = vocab[CLS], vocab[SEP]
        ids, segs = [], []
        for p in self.pairs:
            a, b = vocab[p.tokens_a], vocab[p.tokens_b]
            ids.append([cls_, *a, sep, *b, sep])
            segs.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        self.valid_lens = torch.tensor([len(r) for r in ids], dtype=torch.long)
        self.segments = _pad(segs, max_len, 0)
        original = _pad(ids, max_len, vocab[PAD])
        mlm = mask_tokens(original, self.valid_lens, vocab, g, ratio)
        self.tokens, self.pred_positions, self.mlm_weights, self.mlm_labels = mlm
        self.nsp_labels = torch.tensor([p.is_next for p in self.pairs], dtype=torch.long)

    @classmethod
    def from_corpus(cls, corpus, split: str = "train", max_len: int = 64, seed: int = 0,
                    trim_pairs: bool = False) -> BERTPretrainingDataset:
        """Pairs from the documents of a split of ``course_lib.corpus.load_corpus()``, its English vocabulary."""
        documents = [[s.en for s in doc] for doc in corpus.documents(split)]
        return cls(documents, corpus.src_vocab, max_len, seed, trim_pairs=trim_pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        return (self.tokens[i], self.segments[i], self.valid_lens[i], self.pred_positions[i], self.mlm_weights[i],
                self.mlm_labels[i], self.nsp_labels[i])

    def batch(self, indices: Sequence[int] | Tensor, trim: bool = True) -> tuple[Tensor, ...]:
        """The examples ``indices`` as one batch of 7 tensors, trimmed to the longest sequence and prediction count."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.dim() != 1:
            raise ValueError(f"indices must be a list of example indices, got shape {tuple(idx.shape)}")
        check_index_range(idx, len(self), "indices", f"(a data set of {len(self)} examples)")
        out = [t[idx] for t in (self.tokens, self.segments, self.valid_lens, self.pred_positions, self.mlm_weights,
                                self.mlm_labels, self.nsp_labels)]
        if trim and len(idx):
            T, P = int(out[2].max()), max(1, int(out[4].sum(dim=1).max()))
            out[0], out[1] = out[0][:, :T], out[1][:, :T]
            out[3], out[4], out[5] = out[3][:, :P], out[4][:, :P], out[5][:, :P]
        return tuple(out)

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
               trim: bool = True) -> DataLoader:
        """Batches of :meth:`batch` (shuffling seeded by ``seed``)."""
        _check_int("batch_size", batch_size)
        for name, value in (("shuffle", shuffle), ("drop_last", drop_last), ("trim", trim)):
            check_bool(name, value)
        return DataLoader(range(len(self)), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          generator=torch.Generator().manual_seed(seed),
                          collate_fn=lambda indices: self.batch(indices, trim))


def wikitext2_documents(paragraphs: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    """Paragraphs of sentence strings (``course_lib.datasets.load_wikitext2``) as documents of token lists."""
    check_tokens_not_text("paragraphs", paragraphs)
    for i, paragraph in enumerate(paragraphs):
        if isinstance(paragraph, str) or any(not isinstance(s, str) for s in paragraph):
            raise TypeError(f"paragraphs must be lists of sentence strings (as load_wikitext2 returns); paragraph {i} "
                            f"is {paragraph!r:.60}")
    return [[sentence.split() for sentence in paragraph] for paragraph in paragraphs]


def wikitext2_vocab(documents: Sequence[Sequence[Sequence[str]]]) -> Vocab:
    """The vocabulary of WikiText-2's pretraining data: the tokens seen at least 5 times."""
    return Vocab((t for doc in documents for s in doc for t in s), min_freq=5)


def wikitext2_dataset(split: str = "train", max_len: int = 64, seed: int = 0, folder=None,
                      trim_pairs: bool = False) -> BERTPretrainingDataset:
    """WikiText-2's pretraining examples, with a vocabulary of the tokens seen at least 5 times.

    The text comes through ``course_lib.datasets.load_wikitext2``: downloaded once, verified
    by its hash and cached in ``folder``. Each paragraph of two or more sentences is a document.
    ``split``: "train", "valid" or "test" (checked before anything is downloaded).
    """
    from course_lib.datasets import load_wikitext2

    documents = wikitext2_documents(load_wikitext2(split, folder))
    return BERTPretrainingDataset(documents, wikitext2_vocab(documents), max_len, seed, trim_pairs=trim_pairs)


def load_pretraining_data(
    batch_size: int, max_len: int = 64, source: str = "corpus", split: str = "train", seed: int = 0,
    num_sentences: int = 8000, folder=None,
) -> tuple[DataLoader, Vocab]:
    """``(loader, vocab)`` like d2l's ``load_data_wiki``, from the course corpus or WikiText-2.

    ``source="corpus"``: ``load_corpus(num_sentences, seed)`` and its English vocabulary.
    ``source="wikitext2"``: WikiText-2 through ``course_lib.datasets`` (downloaded once,
    verified; ``folder`` is the cache), a vocabulary of the tokens seen at least 5 times.
    """
    if source == "corpus":
        from course_lib.corpus import load_corpus

        dataset = BERTPretrainingDataset.from_corpus(load_corpus(num_sentences, seed), split, max_len, seed)
    elif source == "wikitext2":
        dataset = wikitext2_dataset(split, max_len, seed, folder)
    else:
        raise ValueError(f"source must be 'corpus' or 'wikitext2', got {source!r}")
    return dataset.loader(batch_size, shuffle=split == "train", seed=seed), dataset.vocab


# -------------------------------------------------------------------------- fine-tuning batches


def encode_inputs(
    vocab: Vocab, texts_a: Sequence[Sequence[str]], texts_b: Sequence[Sequence[str]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of BERT inputs ``(tokens (B, T), segments (B, T), valid_lens (B,))`` for texts or pairs.

    ``texts_a`` (and ``texts_b``) are lists of texts, each a list of tokens (a str is refused).
    """
    check_vocab_has(vocab, (PAD, CLS, SEP), "encode_inputs")
    for name, texts in (("texts_a", texts_a), ("texts_b", texts_b)):
        check_tokens_not_text(name, texts)
        for i, text in enumerate(texts or ()):
            check_tokens_not_text(f"{name}[{i}]", text)
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise ValueError(f"{len(texts_a)} first texts but {len(texts_b)} second ones")
    seqs = [get_tokens_and_segments(list(a), None if texts_b is None else list(texts_b[i]))
            for i, a in enumerate(texts_a)]
    T = max((len(t) for t, _ in seqs), default=0)
    tokens = _pad([vocab[t] for t, _ in seqs], T, vocab[PAD])
    segments = _pad([s for _, s in seqs], T, 0)
    return tokens, segments, torch.tensor([len(t) for t, _ in seqs], dtype=torch.long)


def encode_tagging(
    vocab: Vocab, tag_vocab: Vocab, sentences: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(tokens, segments, valid_lens, tags)`` for token tagging: ``<cls> sentence <sep>``.

    ``tags`` (B, T) is aligned with the tokens: the tag of token t of a sentence at
    position t + 1; ``<cls>``, ``<sep>`` and padding get ``IGNORE_INDEX`` (-100), which
    ``F.cross_entropy`` skips.
    """
    for i, item in enumerate(sentences):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"encode_tagging expects (tokens, tags) pairs; item {i} is {item!r}")
        check_tokens_not_text(f"tokens of item {i}", item[0])
        check_tokens_not_text(f"tags of item {i}", item[1])
    for words, tags in sentences:
        if len(words) != len(tags):
            raise ValueError(f"{len(words)} tokens but {len(tags)} tags in {list(words)}")
    tokens, segments, valid_lens = encode_inputs(vocab, [w for w, _ in sentences])
    labels = torch.full_like(tokens, IGNORE_INDEX)
    for i, (_, tags) in enumerate(sentences):
        labels[i, 1 : 1 + len(tags)] = torch.as_tensor(tag_vocab[list(tags)], dtype=torch.long)
    return tokens, segments, valid_lens, labels

