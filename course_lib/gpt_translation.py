"""Chapter 7: translation with a decoder-only model, "english <sep> french <eos>".

Shape legend: B batch, T the longest sequence of a batch (so X and Y are (B, T - 1)),
V vocabulary size, L the model's ``max_len``.

A decoder-only model has no encoder to read the source: the source becomes the start of
one sequence, a separator says where the translation begins, and the model continues::

    the cat sleeps <sep> le chat dort <eos>
    '--- n_before = 4 --'

It is trained like any language model, predicting every next token from those before it
(teacher forcing), except that the loss counts only the predictions of the French words
and of the final ``<eos>``: predicting the English would spend the model's capacity on a
task we never ask of it (the source is always given). Translating is then continuing the
prompt "english <sep>" greedily until ``<eos>``.

* :func:`encode_translation`: one sentence pair as token ids, and where the French starts.
* :func:`lm_batches`: shuffled, right-padded batches of inputs, targets and the loss mask.
* :func:`train_lm`: Adam with chapter 5's warm-up, a fixed number of optimizer steps, the
  loss per French token, weight snapshots; returns an :class:`LMHistory`.
* :func:`translate_lm`: greedy translations of many sources, batched by source length.

The model is a :class:`course_lib.gpt.GPT` (or any module with a ``config`` holding
``vocab_size`` and ``max_len`` that maps token ids (B, T) to logits (B, T, V)).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import check_bool, check_device, check_int, check_number, check_vocab_has, is_int
from course_lib.gpt_generate import generate
from course_lib.text import EOS, RESERVED, SEP, UNK
from course_lib.training import warmup_schedule

#: Reserved tokens that may not appear inside a sentence: each has a job in the sequence
#: (``<sep>`` and ``<eos>`` mark where the French starts and ends, ``<pad>`` fills
#: batches); ``<unk>`` may, as the stand-in for words the vocabulary lacks.
FORBIDDEN_IN_SENTENCES = tuple(t for t in RESERVED if t != UNK)


# --- one sentence pair as a sequence ---


def _check_tokens(name: str, tokens: object, *, allow_empty: bool = False) -> list[str]:
    """A sequence of str tokens, none of them reserved; returned as a list."""
    if isinstance(tokens, str):
        raise ValueError(f"{name} must be a sequence of tokens (e.g. {tokens[:30]!r}.split()), got the str "
                         f"{tokens[:40]!r}, which would be read one character at a time")
    if not isinstance(tokens, Sequence):
        raise ValueError(f"{name} must be a sequence of str tokens, got {type(tokens).__name__}")
    tokens = list(tokens)
    if not tokens and not allow_empty:
        raise ValueError(f"{name} is empty: a translation needs at least one token on each side")
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise ValueError(f"{name} must hold str tokens, got {type(t).__name__} {t!r} at position {i}")
        if t in FORBIDDEN_IN_SENTENCES:
            raise ValueError(f"{name} holds the reserved token {t!r} at position {i}; {SEP} and {EOS} mark where the "
                             f"French starts and ends, so none of {FORBIDDEN_IN_SENTENCES} may appear in a sentence")
    return tokens


def _pair(sentence: object) -> tuple[object, object]:
    """(en, fr) of a corpus ``Sentence`` (anything with ``.en`` and ``.fr``) or of a pair."""
    if hasattr(sentence, "en") and hasattr(sentence, "fr"):
        return sentence.en, sentence.fr  # type: ignore[attr-defined]
    if isinstance(sentence, (tuple, list)) and len(sentence) == 2:
        return sentence[0], sentence[1]
    raise ValueError(f"sentence must have .en and .fr token sequences (a corpus Sentence) or be an (en, fr) pair, "
                     f"got {type(sentence).__name__} {str(sentence)[:60]}")


def encode_translation(sentence, vocab) -> tuple[list[int], int]:
    """The ids of "english <sep> french <eos>", and ``n_before`` = len(english) + 1.

    ``sentence``: a corpus ``Sentence`` (its ``.en`` and ``.fr``) or an ``(en, fr)`` pair
    of token sequences, each non-empty and free of reserved tokens (see
    ``FORBIDDEN_IN_SENTENCES``); ``vocab``: a :class:`course_lib.text.Vocab` holding
    ``<sep>`` and ``<eos>`` (tokens it lacks become ``<unk>``, as everywhere).

    ``n_before`` is the number of tokens before the first French word: the target of
    input position ``n_before - 1`` (the ``<sep>``) is the first French word, so the
    targets ``n_before - 1`` to the end are the ones the loss counts.
    """
    check_vocab_has(vocab, (SEP, EOS), "encode_translation (vocab)")
    en, fr = _pair(sentence)
    en = _check_tokens("the source (en)", en)
    fr = _check_tokens("the translation (fr)", fr)
    return vocab[[*en, SEP, *fr, EOS]], len(en) + 1


# --- batches ---


def _check_items(items: object, name: str = "items") -> list[tuple[list[int], int]]:
    """``items`` as a non-empty list of (ids, n_before), each checked; the caller's objects are not changed."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"{name} must be a list of (ids, n_before) pairs from encode_translation, "
                         f"got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError(f"{name} is empty: there is nothing to train on")
    checked = []
    for k, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{name}[{k}] must be a pair (ids, n_before) as encode_translation returns, got "
                             f"{type(item).__name__} {str(item)[:60]}")
        ids, n_before = item
        if isinstance(ids, Tensor):
            ids = ids.tolist() if ids.dim() == 1 and not ids.dtype.is_floating_point else ids
        if not isinstance(ids, (list, tuple)) or not all(is_int(i) and i >= 0 for i in ids):
            raise ValueError(f"{name}[{k}]: ids must be a list of token ids (ints >= 0), got {str(ids)[:60]}")
        if not is_int(n_before) or not 1 <= n_before <= len(ids) - 1:
            raise ValueError(f"{name}[{k}]: n_before must be an int in [1, len(ids) - 1] = [1, {len(ids) - 1}] (at "
                             f"least one token before the French and one target in the loss), got {n_before!r}")
        checked.append((list(ids), int(n_before)))
    return checked


def _batches(items: list[tuple[list[int], int]], batch_size: int, pad_id: int, order: list[int]
             ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The batches of checked ``items`` in ``order``: see :func:`lm_batches`."""
    for start in range(0, len(order), batch_size):
        chunk = [items[i] for i in order[start:start + batch_size]]
        T = max(len(ids) for ids, _ in chunk)
        seqs = torch.full((len(chunk), T), pad_id, dtype=torch.long)  # (B, T), padded on the right
        in_loss = torch.zeros(len(chunk), T - 1, dtype=torch.bool)  # (B, T - 1), one flag per target
        for b, (ids, n_before) in enumerate(chunk):
            seqs[b, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            in_loss[b, n_before - 1:len(ids) - 1] = True  # targets n_before .. len - 1: the French and <eos>
        yield seqs[:, :-1], seqs[:, 1:], in_loss  # X (B, T - 1) predicts Y (B, T - 1), shifted by one


def lm_batches(items, batch_size: int, *, pad_id: int, generator: torch.Generator | None = None,
               shuffle: bool = True) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One epoch of batches ``(X, Y, in_loss)``, each (B, T - 1), from ``items`` (ids, n_before).

    Each batch's sequences are padded on the right with ``pad_id`` to the longest of the
    batch, T: on the right, so that every real token keeps its position and, under the
    causal mask, never sees a pad (padding on the left would shift the positions the
    model learned). ``X = seq[:, :-1]`` and ``Y = seq[:, 1:]``: position t of X is
    trained to predict position t of Y. ``in_loss`` is True exactly where Y holds a French
    word or the final ``<eos>``: never on the English, the ``<sep>`` or the padding.

    With ``shuffle`` the order is ``torch.randperm(len(items), generator=generator)``
    (None: PyTorch's global generator), so a seeded generator gives the same batches;
    without, the order of ``items``. The last batch may be smaller. Tensors are on the
    CPU; ``items`` is never changed. Bad arguments raise a ValueError at the call, before
    the first batch.
    """
    checked = _check_items(items)
    check_int("batch_size", batch_size)
    check_int("pad_id", pad_id, minimum=0)
    check_bool("shuffle", shuffle)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    order = torch.randperm(len(checked), generator=generator).tolist() if shuffle else list(range(len(checked)))
    return _batches(checked, batch_size, pad_id, order)


# --- training ---


@dataclass
class LMHistory:
    """What :func:`train_lm` measured, one entry per record.

    A record is taken at the end of every epoch, at each of the ``snapshot_steps`` and
    at the last step (once where these coincide). ``steps[i]``: the optimizer steps done
    by then; ``losses[i]``: the mean cross-entropy per French token (French words and
    ``<eos>``) over the steps since the previous record, every token counting once;
    ``seconds[i]``: the cumulative training time (batches, forward, backward, update;
    not the records and snapshots themselves), to compare models at equal time.
    ``snapshots[k]``: a deep copy of ``net.state_dict()`` after k steps.
    ``interrupted``: training was stopped by Ctrl-C (``KeyboardInterrupt``).
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    snapshots: dict[int, dict] = field(default_factory=dict)
    interrupted: bool = False


def _model_sizes(net: object, who: str) -> tuple[int, int]:
    """(V, L) of a GPT-like model: its ``config.vocab_size`` and ``config.max_len``."""
    config = getattr(net, "config", None)
    V, L = getattr(config, "vocab_size", None), getattr(config, "max_len", None)
    if not isinstance(net, nn.Module) or not is_int(V) or not is_int(L):
        raise ValueError(f"{who} expects a course_lib.gpt.GPT (a module with config.vocab_size and config.max_len), "
                         f"got {type(net).__name__}")
    return V, L  # type: ignore[return-value]


def _model_device(net: nn.Module, who: str) -> torch.device:
    parameter = next(net.parameters(), None)
    if parameter is None:
        raise ValueError(f"{who}: the model has no parameters")
    return parameter.device


def train_lm(net: nn.Module, items, *, num_steps: int, pad_id: int, lr: float = 0.002, batch_size: int = 32,
             warmup: int = 200, seed: int = 0, device: torch.device | str | None = None,
             snapshot_steps=(), clip: float | None = 1.0) -> LMHistory:
    """Train a decoder-only model on ``items`` (from :func:`encode_translation`) for ``num_steps`` steps.

    * Exactly ``num_steps`` optimizer steps of Adam at the rate ``lr`` times chapter 5's
      ``warmup_schedule(warmup)`` (linear warm-up, then 1/sqrt(step); step 1 uses its
      value at 1), with gradients clipped to the norm ``clip`` (None: no clipping). A
      step count, not epochs, so that two runs (or a run and its snapshot) can be
      compared step for step; the batches cycle over epochs, stopping mid-epoch if need be.
    * The loss: mean cross-entropy over the batch's French targets (``in_loss`` of
      :func:`lm_batches`), so a batch's loss does not depend on how long its English is.
    * ``seed`` fixes everything random: ``torch.manual_seed(seed)`` (dropout) and one
      ``torch.Generator`` seeded with it that shuffles every epoch anew. The same starting
      weights and seed give the same weights (on the same device and thread count); a
      run of k steps is the first k steps of a longer one.
    * ``device``: where to train (the model is moved there); None: where the model is.
    * ``snapshot_steps``: step counts (each in [1, num_steps]) at which a deep copy of the
      weights is kept in ``history.snapshots``, e.g. a model at equal training time.

    Returns an :class:`LMHistory`; **the model is left in evaluation mode**. Ctrl-C
    (``KeyboardInterrupt``) during training stops it without losing the run: a warning
    says after how many steps, and the history so far is returned with the model as it
    was trained. A loss that is not finite raises a ``FloatingPointError`` before its
    step changes the weights. Bad arguments raise a ``ValueError`` naming the argument
    before training starts.
    """
    V, L = _model_sizes(net, "train_lm")
    checked = _check_items(items)
    check_int("num_steps", num_steps)
    check_int("pad_id", pad_id, minimum=0, maximum=V - 1)
    lr = check_number("lr", lr, positive=True)
    check_int("batch_size", batch_size)
    check_int("warmup", warmup)
    check_int("seed", seed, minimum=0)
    if clip is not None:
        clip = check_number("clip", clip, positive=True)
    if isinstance(snapshot_steps, (str, bytes)) or not hasattr(snapshot_steps, "__iter__"):
        raise ValueError(f"snapshot_steps must be a collection of step counts (e.g. [100, 200]), "
                         f"got {snapshot_steps!r}")
    snapshot_steps = list(snapshot_steps)
    for k in snapshot_steps:
        check_int("snapshot_steps", k, minimum=1, maximum=num_steps)
    snapshot_at = set(snapshot_steps)
    for k, (ids, _) in enumerate(checked):
        if max(ids) >= V:
            raise ValueError(f"items[{k}] holds the token id {max(ids)}, outside the model's vocabulary of {V} "
                             f"(vocab_size); encode with the vocabulary the model was built for")
        if len(ids) - 1 > L:
            raise ValueError(f"items[{k}] has {len(ids)} tokens: its {len(ids) - 1} inputs exceed the model's "
                             f"max_len={L}")
    device = _model_device(net, "train_lm") if device is None else check_device("device", device)

    torch.manual_seed(seed)  # dropout, if the model has any
    generator = torch.Generator().manual_seed(seed)  # the order of every epoch
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = warmup_schedule(warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: schedule(i + 1))  # i: steps done so far
    history = LMHistory()
    step, total, count, elapsed = 0, 0.0, 0, 0.0  # total / count: loss per French token since the last record
    start = time.perf_counter()

    def record() -> None:
        history.steps.append(step)
        history.losses.append(total / count)
        history.seconds.append(elapsed)

    try:
        while step < num_steps:
            order = torch.randperm(len(checked), generator=generator).tolist()
            start = time.perf_counter()
            for X, Y, in_loss in _batches(checked, batch_size, pad_id, order):
                X, Y, in_loss = X.to(device), Y.to(device), in_loss.to(device)  # (B, T - 1) each
                logits = net(X)  # (B, T - 1, V)
                loss = F.cross_entropy(logits[in_loss], Y[in_loss])  # (N, V) and (N,): the French targets only
                value = loss.item()  # once per step, as fit: the running mean needs it, and NaN stops here
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"train_lm: the loss is {value} at step {step + 1} (the training diverged, or the model's "
                        f"outputs hold inf or NaN); the model keeps the weights of step {step}. Try a smaller lr "
                        f"(got {lr}) or clipping (clip={clip})")
                optimizer.zero_grad()
                loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), clip)
                optimizer.step()
                scheduler.step()
                step += 1
                n = int(in_loss.sum())
                total, count = total + value * n, count + n
                last = step == num_steps
                if step in snapshot_at or last:
                    elapsed += time.perf_counter() - start
                    record()
                    total, count = 0.0, 0
                    if step in snapshot_at:
                        history.snapshots[step] = copy.deepcopy(net.state_dict())
                    start = time.perf_counter()
                if last:
                    break
            if count:  # the end of an epoch not recorded above
                elapsed += time.perf_counter() - start
                record()
                total, count = 0.0, 0
    except KeyboardInterrupt:
        history.interrupted = True
        if count:
            elapsed += time.perf_counter() - start
            record()
        warnings.warn(f"train_lm: interrupted after {step} of {num_steps} optimizer steps; returning the history so "
                      f"far, with the model as trained by step {step}", stacklevel=2)
    net.eval()
    return history


# --- translating ---


@torch.no_grad()
def translate_lm(net: nn.Module, sources, vocab, *, device: torch.device | str | None = None,
                 max_new_tokens: int | None = None) -> list[list[str]]:
    """Greedy translations: the French tokens that follow "source <sep>", up to the first ``<eos>``.

    ``sources``: token sequences (each non-empty, no reserved token); ``vocab``: the
    vocabulary the model was trained with (holding ``<sep>`` and ``<eos>``). Each prompt
    "source <sep>" is continued with :func:`course_lib.gpt.generate` (greedy, stopping at
    ``<eos>``), with at most ``max_new_tokens`` new tokens (None: as many as fit,
    ``max_len - len(prompt)``); a translation that reaches the limit without ``<eos>`` is
    returned as written. Sources are batched **by length**: a batch of prompts of
    different lengths padded on the right would have the model continue the pads of the
    short ones. The results come back in the order of ``sources``.

    ``device``: where the model is (None: where its parameters are); the model's training
    flag is restored after.
    """
    V, L = _model_sizes(net, "translate_lm")
    check_vocab_has(vocab, (SEP, EOS), "translate_lm (vocab)")
    if len(vocab) != V:
        raise ValueError(f"vocab has {len(vocab)} tokens but the model predicts over {V} (config.vocab_size): pass "
                         f"the vocabulary the model was trained with")
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
        raise ValueError(f"sources must be a list of token sequences, got {type(sources).__name__}")
    prompts = [_check_tokens(f"sources[{i}]", s) for i, s in enumerate(sources)]
    if max_new_tokens is not None:
        check_int("max_new_tokens", max_new_tokens)
    if prompts:
        longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
        room = L - (len(prompts[longest]) + 1)  # new positions left after the longest prompt and its <sep>
        if room < 1:
            raise ValueError(f"sources[{longest}] has {len(prompts[longest])} tokens: with its {SEP} it fills the "
                             f"model's max_len={L} and leaves no room for a translation")
        if max_new_tokens is not None and max_new_tokens > room:
            raise ValueError(f"max_new_tokens={max_new_tokens} does not fit: the longest source, sources[{longest}], "
                             f"has {len(prompts[longest])} tokens, so with its {SEP} the model's max_len={L} leaves "
                             f"room for at most {room} new tokens")
    net_device = _model_device(net, "translate_lm")
    if device is not None:
        device = check_device("device", device)
        if device.type != net_device.type or (device.index is not None and net_device.index is not None
                                              and device.index != net_device.index):
            raise ValueError(f"device={str(device)!r}, but the model is on {net_device}: move it first "
                             f"(net.to(device)) or leave device=None")
    modes = {m: m.training for m in net.modules()}
    outputs: list[list[str] | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, tokens in enumerate(prompts):
        by_length.setdefault(len(tokens), []).append(i)
    eos = vocab[EOS]
    try:
        for n, indices in sorted(by_length.items()):
            prompt = torch.tensor([vocab[[*prompts[i], SEP]] for i in indices], device=net_device)  # (B, n + 1)
            new = L - (n + 1) if max_new_tokens is None else max_new_tokens
            out = generate(net, prompt, new, do_sample=False, eos=eos)[:, n + 1:]  # (B, new or fewer)
            for i, row in zip(indices, vocab.to_tokens(out.cpu())):
                outputs[i] = row[:row.index(EOS)] if EOS in row else row
    finally:
        for m, mode in modes.items():
            m.training = mode
    return outputs  # type: ignore[return-value]


__all__ = ["FORBIDDEN_IN_SENTENCES", "LMHistory", "encode_translation", "lm_batches", "train_lm", "translate_lm"]
