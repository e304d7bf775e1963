"""Tokens to tensors: vocabularies, padded batches, and BLEU.

Shape legend: B batch, T time steps (tokens).

``Vocab`` maps tokens to indices with reserved tokens first: ``<pad>`` (0), ``<bos>``,
``<eos>``, ``<unk>``, and for BERT ``<cls>``, ``<sep>``, ``<mask>``. Datasets turn
sentences into index tensors; ``collate_*`` functions pad a batch to its longest
sequence and return valid lengths, the form the attention layers' ``valid_lens`` take.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

PAD, BOS, EOS, UNK, CLS, SEP, MASK = "<pad>", "<bos>", "<eos>", "<unk>", "<cls>", "<sep>", "<mask>"
RESERVED = (PAD, BOS, EOS, UNK, CLS, SEP, MASK)


class Vocab:
    """Token <-> index. Reserved tokens first (``<pad>`` is 0), then tokens by falling frequency.

    ``vocab["cat"]`` and ``vocab[["the", "cat"]]`` give indices (unknown tokens give the
    index of ``<unk>``); ``vocab.to_tokens(indices)`` goes back. Same interface as d2l's.
    """

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 1, reserved_tokens: Sequence[str] = RESERVED) -> None:
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        reserved = list(dict.fromkeys(reserved_tokens))
        if UNK not in reserved:
            reserved.append(UNK)
        counts = Counter(tokens)
        frequent = sorted((t for t, c in counts.items() if c >= min_freq and t not in reserved), key=lambda t: (-counts[t], t))
        self.idx_to_token: list[str] = reserved + frequent
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}
        self.token_freqs = counts

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        return [self[t] for t in tokens]

    def to_tokens(self, indices):
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        if isinstance(indices, int):
            return self.idx_to_token[indices]
        return [self.idx_to_token[int(i)] for i in indices]

    @property
    def unk(self) -> int:
        return self.token_to_idx[UNK]

    @property
    def pad(self) -> int:
        return self.token_to_idx.get(PAD, -1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"idx_to_token": self.idx_to_token}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = json.loads(Path(path).read_text())
        tokens = data.get("idx_to_token") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or UNK not in tokens:
            raise ValueError(f"{path} is not a saved Vocab (expected {{'idx_to_token': [... '<unk>' ...]}})")
        vocab = cls([], reserved_tokens=[])
        vocab.idx_to_token = tokens
        vocab.token_to_idx = {t: i for i, t in enumerate(tokens)}
        return vocab


def pad_batch(sequences: Sequence[Sequence[int]], pad: int, num_steps: int | None = None) -> tuple[Tensor, Tensor]:
    """Pad to the longest sequence (or to num_steps): returns (B, T) indices and (B,) valid lengths.

    A sequence longer than num_steps raises a ValueError rather than being cut silently.
    """
    lengths = [len(s) for s in sequences]
    width = max(lengths, default=0) if num_steps is None else num_steps
    if num_steps is not None and lengths and max(lengths) > num_steps:
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit num_steps={num_steps}")
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.tensor(lengths, dtype=torch.long)


class TranslationDataset(Dataset):
    """Pairs of (source indices + <eos>, target indices + <eos>)."""

    def __init__(self, pairs: Sequence[tuple[Sequence[str], Sequence[str]]], src_vocab: Vocab, tgt_vocab: Vocab) -> None:
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.items = [(src_vocab[list(s)] + [src_vocab[EOS]], tgt_vocab[list(t)] + [tgt_vocab[EOS]]) for s, t in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.items[i]

    def collate(self, batch: list[tuple[list[int], list[int]]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(src (B, Ts), src_valid_len (B,), tgt (B, Tt), tgt_valid_len (B,)) in the order of the older d2l's load_data_nmt (d2l 1.0's MTFraEng differs)."""
        src, src_len = pad_batch([b[0] for b in batch], self.src_vocab.pad)
        tgt, tgt_len = pad_batch([b[1] for b in batch], self.tgt_vocab.pad)
        return src, src_len, tgt, tgt_len


class TaggingDataset(Dataset):
    """Token indices with one label per token (sequence labeling, e.g. part-of-speech tags)."""

    def __init__(self, sentences: Sequence[tuple[Sequence[str], Sequence[str]]], vocab: Vocab, tag_vocab: Vocab) -> None:
        for tokens, tags in sentences:
            if len(tokens) != len(tags):
                raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags in {list(tokens)}")
        self.vocab, self.tag_vocab = vocab, tag_vocab
        self.items = [(vocab[list(t)], tag_vocab[list(g)]) for t, g in sentences]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.items[i]

    def collate(self, batch):
        """(tokens (B, T), valid_len (B,), tags (B, T)); padded tags are -100 (ignored by cross_entropy)."""
        tokens, lengths = pad_batch([b[0] for b in batch], self.vocab.pad)
        tags, _ = pad_batch([b[1] for b in batch], -100)
        return tokens, lengths, tags


class ClassificationDataset(Dataset):
    """Token indices with one label per sequence (e.g. the topic)."""

    def __init__(self, sentences: Sequence[tuple[Sequence[str], int]], vocab: Vocab) -> None:
        self.vocab = vocab
        self.items = [(vocab[list(t)], int(label)) for t, label in sentences]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]

    def collate(self, batch):
        """(tokens (B, T), valid_len (B,), labels (B,))."""
        tokens, lengths = pad_batch([b[0] for b in batch], self.vocab.pad)
        return tokens, lengths, torch.tensor([b[1] for b in batch], dtype=torch.long)


def item_length(item) -> int:
    """The length that decides a batch's padded width: the longest sequence of an item
    (for a translation pair, its source or its target; for a tagged sentence, its tokens)."""
    return max(len(part) for part in item if isinstance(part, (list, tuple))) if isinstance(item, tuple) else len(item)


class LengthGroupedBatches(Sampler):
    """Batches of items of similar length, in a random order: less padding, same data.

    A batch is padded to its longest item, and a recurrent decoder runs one step per
    position of the padded target, so a batch that mixes a 5-token and a 25-token
    sentence does 25 steps for both. Every epoch this sampler shuffles all indices (with
    ``generator``), cuts them into pools of ``pool_batches`` batches, sorts each pool by
    length, cuts it into batches and shuffles the order of all the batches. Each index
    appears exactly once per epoch, as with ``shuffle=True``; what changes is which items
    share a batch. Re-seeding ``generator`` repeats the same sequence of batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                 pool_batches: int = 50) -> None:
        for name, value in (("batch_size", batch_size), ("pool_batches", pool_batches)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.lengths, self.batch_size, self.generator, self.pool = list(lengths), batch_size, generator, pool_batches

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            pool = sorted(order[start : start + size], key=self.lengths.__getitem__)  # stable: ties stay shuffled
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        size = self.batch_size * self.pool
        full, rest = divmod(len(self.lengths), size)
        return full * self.pool + -(-rest // self.batch_size)


def loader(dataset, batch_size: int, shuffle: bool = False, seed: int = 0, by_length: bool = False) -> DataLoader:
    """A DataLoader using the dataset's own collate function; shuffling is seeded.

    ``by_length=True`` (training loaders only, with ``shuffle``) groups items of similar
    length into the same batches (:class:`LengthGroupedBatches`), which saves the work
    spent on padding. The loader's ``generator`` drives the shuffling either way, so
    re-seeding it (as ``course_lib.training.fit`` does) repeats the same batches.
    """
    generator = torch.Generator().manual_seed(seed)
    if not by_length:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=dataset.collate, generator=generator)
    if not shuffle:
        raise ValueError("by_length=True groups a shuffled (training) loader's batches by length; "
                         "it needs shuffle=True (an evaluation loader keeps its order)")
    sampler = LengthGroupedBatches([item_length(dataset[i]) for i in range(len(dataset))], batch_size, generator)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate, generator=generator)


def bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0-100) of token lists, computed by sacrebleu on the space-joined tokens.

    Tokens are used as they are (sacrebleu's ``tokenize="none"``): the corpus is already
    tokenized, and a second tokenization would split "l'" differently from the model.
    """
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    hyps = [" ".join(h) for h in hypotheses]
    refs = [" ".join(r) for r in references]
    # force: the text is tokenized on purpose (sacrebleu would otherwise warn on stderr)
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score
