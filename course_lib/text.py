"""Tokens to tensors: vocabularies, padded batches, and BLEU.

Shape legend: B batch, T time steps (tokens).

``Vocab`` maps tokens to indices with reserved tokens first: ``<pad>`` (0), ``<bos>``,
``<eos>``, ``<unk>``, and for BERT ``<cls>``, ``<sep>``, ``<mask>``. Datasets turn
sentences into index tensors; ``collate_*`` functions pad a batch to its longest
sequence and return valid lengths, the form the attention layers' ``valid_lens`` take.
"""

from __future__ import annotations

import json
import numbers
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from course_lib._checks import atomic_write, check_bool, check_int, check_tokens_not_text, is_int

PAD, BOS, EOS, UNK, CLS, SEP, MASK = "<pad>", "<bos>", "<eos>", "<unk>", "<cls>", "<sep>", "<mask>"
RESERVED = (PAD, BOS, EOS, UNK, CLS, SEP, MASK)


class Vocab:
    """Token <-> index. Reserved tokens first (``<pad>`` is 0), then tokens by falling frequency.

    ``vocab["cat"]`` and ``vocab[["the", "cat"]]`` give indices (unknown tokens give the
    index of ``<unk>``); ``vocab.to_tokens(indices)`` goes back. Same interface as d2l's.

    ``tokens`` is an iterable of str tokens, or of sentences (lists of str tokens), whose
    tokens are counted together as d2l does (a str itself is refused: it would give a
    vocabulary of characters). ``vocab[...]`` takes a token or a (nested) list of
    tokens, never ids; ``to_tokens`` takes an int, a (nested) list of ints or an integer
    tensor of any shape, each in [0, len(vocab)), and returns the same nesting of tokens.
    """

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 1, reserved_tokens: Sequence[str] = RESERVED) -> None:
        check_int("min_freq", min_freq)
        check_tokens_not_text("tokens", tokens)
        check_tokens_not_text("reserved_tokens", reserved_tokens)
        if any(not isinstance(t, str) for t in reserved_tokens):
            raise TypeError(f"reserved_tokens must be str tokens, got {list(reserved_tokens)!r}")
        reserved = list(dict.fromkeys(reserved_tokens))
        if UNK not in reserved:
            reserved.append(UNK)
        tokens = list(tokens)
        if any(isinstance(t, (list, tuple)) for t in tokens):  # sentences of tokens: counted together, as d2l does
            for i, line in enumerate(tokens):
                if not isinstance(line, (list, tuple)):
                    raise TypeError(f"tokens must be str tokens or lists of str tokens (one per sentence), not a mix: "
                                    f"item {i} is {type(line).__name__} {line!r}")
            tokens = [t for line in tokens for t in line]
        bad = next((t for t in tokens if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"tokens must be str (one token each, e.g. sentence.split()), got {type(bad).__name__} "
                            f"{bad!r}")
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
        if isinstance(tokens, Iterable) and not isinstance(tokens, Tensor):
            return [self[t] for t in tokens]
        hint = " (ids go the other way: vocab.to_tokens(ids))" if isinstance(tokens, (numbers.Integral, Tensor)) else ""
        raise TypeError(f"vocab[...] maps a token (str) or a list of tokens to ids, got {type(tokens).__name__} "
                        f"{tokens!r}{hint}")

    def to_tokens(self, indices):
        if isinstance(indices, Tensor):
            if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
                raise TypeError(f"to_tokens expects integer ids, got a tensor of dtype {indices.dtype}")
            indices = indices.tolist()
        elif hasattr(indices, "tolist") and hasattr(indices, "dtype"):  # a NumPy array or scalar
            indices = indices.tolist()
        if isinstance(indices, (list, tuple)):
            return [self.to_tokens(i) for i in indices]
        if not is_int(indices):
            raise TypeError(f"to_tokens expects an int id, a list of ids or an integer tensor, got "
                            f"{type(indices).__name__} {indices!r}")
        if not 0 <= indices < len(self.idx_to_token):
            raise ValueError(f"token id must be in [0, {len(self.idx_to_token)}) for a vocabulary of "
                             f"{len(self.idx_to_token)} tokens, got {indices}")
        return self.idx_to_token[indices]

    @property
    def unk(self) -> int:
        return self.token_to_idx[UNK]

    @property
    def pad(self) -> int:
        return self.token_to_idx.get(PAD, -1)

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the tokens to a JSON file, atomically (a failure leaves an earlier file untouched).

        An existing file at ``path`` is not replaced unless ``overwrite=True`` (a
        ``FileExistsError`` leaves it as it is).
        """
        check_bool("overwrite", overwrite)
        text = json.dumps({"idx_to_token": self.idx_to_token}, ensure_ascii=False, indent=0)
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], source: str = "idx_to_token") -> Vocab:
        """The vocabulary whose token i is ``tokens[i]`` (distinct str tokens, ``<unk>`` among them)."""
        if not isinstance(tokens, (list, tuple)) or any(not isinstance(t, str) for t in tokens) \
                or UNK not in tokens or len(set(tokens)) != len(tokens):
            raise ValueError(f"{source} is not a Vocab's token list (expected distinct str tokens, {UNK!r} among them)")
        vocab = cls([], reserved_tokens=[])
        vocab.idx_to_token = list(tokens)
        vocab.token_to_idx = {t: i for i, t in enumerate(tokens)}
        return vocab

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """A vocabulary written by :meth:`save`; a damaged or foreign file raises a ValueError."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a saved Vocab (expected JSON {{'idx_to_token': [...]}}): {err}") from None
        tokens = data.get("idx_to_token") if isinstance(data, dict) else None
        try:
            return cls.from_tokens(tokens)  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"{path} is not a saved Vocab (expected {{'idx_to_token': [distinct str tokens, "
                             f"{UNK!r} among them]}})") from None


def pad_batch(sequences: Sequence[Sequence[int]], pad: int, num_steps: int | None = None) -> tuple[Tensor, Tensor]:
    """Pad to the longest sequence (or to num_steps): returns (B, T) indices and (B,) valid lengths.

    A sequence longer than num_steps raises a ValueError rather than being cut silently.
    Sequences hold int ids (a str is refused); ``pad`` is an int; ``num_steps`` an int >= 0.
    """
    check_int("pad", pad, minimum=None)
    if num_steps is not None:
        check_int("num_steps", num_steps, minimum=0)
    check_tokens_not_text("sequences", sequences)
    for i, seq in enumerate(sequences):
        if isinstance(seq, str) or any(not is_int(t) for t in seq):
            raise TypeError(f"pad_batch expects sequences of int ids; sequence {i} is {seq!r}")
    lengths = [len(s) for s in sequences]
    width = max(lengths, default=0) if num_steps is None else num_steps
    if num_steps is not None and lengths and max(lengths) > num_steps:
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit num_steps={num_steps}")
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.tensor(lengths, dtype=torch.long)


def _check_pairs(items: Sequence, first: str, second: str, who: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{who} expects ({first}, {second}) pairs; item {i} is {item!r}")
        check_tokens_not_text(f"{first} of item {i}", item[0])
        if second != "label":
            check_tokens_not_text(f"{second} of item {i}", item[1])


def _check_vocabs(**vocabs: tuple) -> None:
    for who, given in vocabs.items():
        for v in given:
            if not isinstance(v, Vocab):
                raise TypeError(f"{who} expects course_lib.text.Vocab vocabularies, got {type(v).__name__}")


class TranslationDataset(Dataset):
    """Pairs of (source indices + <eos>, target indices + <eos>); pairs of token lists."""

    def __init__(self, pairs: Sequence[tuple[Sequence[str], Sequence[str]]], src_vocab: Vocab, tgt_vocab: Vocab) -> None:
        _check_pairs(pairs, "source tokens", "target tokens", "TranslationDataset")
        _check_vocabs(TranslationDataset=(src_vocab, tgt_vocab))
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
        _check_pairs(sentences, "tokens", "tags", "TaggingDataset")
        _check_vocabs(TaggingDataset=(vocab, tag_vocab))
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
        _check_pairs(sentences, "tokens", "label", "ClassificationDataset")
        _check_vocabs(ClassificationDataset=(vocab,))
        for i, (_, label) in enumerate(sentences):
            if not is_int(label) or label < 0:
                raise ValueError(f"ClassificationDataset: labels must be class indices (ints >= 0); item {i} has "
                                 f"{label!r}")
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
    check_int("batch_size", batch_size)
    check_bool("shuffle", shuffle)  # shuffle="no" would shuffle
    check_bool("by_length", by_length)
    check_int("seed", seed, minimum=None)
    if not callable(getattr(dataset, "collate", None)):
        raise TypeError(f"loader expects a course_lib.text dataset (with a collate method), got {type(dataset).__name__}")
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

    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        check_tokens_not_text(name, texts)
        for i, t in enumerate(texts):
            check_tokens_not_text(f"{name}[{i}]", t)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU needs at least one sentence (a corpus BLEU of no sentence is undefined), got none")
    hyps = [" ".join(h) for h in hypotheses]
    refs = [" ".join(r) for r in references]
    # force: the text is tokenized on purpose (sacrebleu would otherwise warn on stderr)
    return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score
