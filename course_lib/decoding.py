"""Decoding and evaluating encoder–decoder models, shared by chapters 3 and 5.

Works for any model with ``model.encoder(src (B, Ts), src_valid_len (B,))`` and a
decoder with ``init_state(enc_outputs, src_valid_len)`` and ``forward(X (B, T), state) ->
(logits (B, T, V), state)`` that can be fed one step at a time and returns a new state
rather than changing the one it was given (beam search feeds one state to several
candidates; a decoder with a key/value cache must copy, not append in place). A decoder may also
define ``step_alignment()``, returning the attention weights over the source of the
step just taken, (B, Ts); greedy decoding then returns them for plots.

* ``greedy_decode`` and ``beam_search``: one sentence.
* ``translate``: greedy decoding of many sentences, a batch at a time (fast).
* ``evaluate_bleu``: corpus BLEU of a model's translations.
* ``length_buckets``: sentences grouped by source length.

Sentences are lists of tokens (a str is refused: it would be read one character at a
time); ``max_steps`` is an int >= 1; the vocabularies must hold ``<bos>`` and ``<eos>``,
and the model must predict over ``len(tgt_vocab)`` tokens (vocabularies passed in the
wrong order are refused, unless they happen to have the same size).
Every function puts the model in evaluation mode (``model.eval()``) and leaves it there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import check_int, check_number, check_tokens_not_text, check_vocab_has
from course_lib.text import BOS, EOS, PAD, Vocab, bleu


def _check_decoding(tokens_or_sentences: object, src_vocab: Vocab, tgt_vocab: Vocab, max_steps: int,
                    many: bool) -> None:
    if many:
        check_tokens_not_text("sentences", tokens_or_sentences)
        for i, s in enumerate(tokens_or_sentences):  # type: ignore[attr-defined]
            check_tokens_not_text(f"sentences[{i}]", s)
    else:
        check_tokens_not_text("tokens", tokens_or_sentences)
    check_vocab_has(src_vocab, (EOS,), "decoding (src_vocab)")
    check_vocab_has(tgt_vocab, (BOS, EOS), "decoding (tgt_vocab)")
    check_int("max_steps", max_steps)


def _encode(model: nn.Module, tokens: Sequence[str], src_vocab: Vocab, device):
    """The decoder's initial state for one sentence (its source ends with <eos>)."""
    ids = torch.tensor([src_vocab[list(tokens)] + [src_vocab[EOS]]], device=device)  # (1, Ts)
    valid = torch.tensor([ids.shape[1]], device=device)
    return model.decoder.init_state(model.encoder(ids, valid), valid)


def _check_output_size(logits: Tensor, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
    """The model must predict over the target vocabulary: its ids are read as ``tgt_vocab``'s tokens."""
    if logits.shape[-1] != len(tgt_vocab):
        swapped = " (src_vocab has that size: are the two vocabularies swapped?)" \
            if logits.shape[-1] == len(src_vocab) else ""
        raise ValueError(f"the model predicts over {logits.shape[-1]} target tokens but tgt_vocab has {len(tgt_vocab)}"
                         f"{swapped}: pass the vocabularies the model was built with, the source's first")


def _step_alignment(decoder: nn.Module) -> Tensor | None:
    """The decoder's attention over the source at the last step, (B, Ts), if it has any."""
    fn = getattr(decoder, "step_alignment", None)
    return fn() if callable(fn) else None


@torch.no_grad()
def greedy_decode(
    model: nn.Module, tokens: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, max_steps: int = 30,
    device: torch.device | str = "cpu",
) -> tuple[list[str], Tensor | None]:
    """Translate one tokenized sentence by taking the most likely token at each step.

    Returns the output tokens (without <eos>) and, for a decoder with ``step_alignment``,
    the attention weights (output steps, source tokens + <eos>), else None.
    """
    _check_decoding(tokens, src_vocab, tgt_vocab, max_steps, many=False)
    model.eval()
    state = _encode(model, tokens, src_vocab, device)
    step = torch.tensor([[tgt_vocab[BOS]]], device=device)
    out, weights = [], []
    for _ in range(max_steps):
        logits, state = model.decoder(step, state)  # (1, 1, V)
        _check_output_size(logits, src_vocab, tgt_vocab)
        alignment = _step_alignment(model.decoder)
        if alignment is not None:
            weights.append(alignment[0])
        step = logits[:, -1:].argmax(dim=-1)  # (1, 1)
        token = tgt_vocab.to_tokens(int(step))
        if token == EOS:
            break
        out.append(token)
    return out, (torch.stack(weights) if weights else None)


@torch.no_grad()
def translate(
    model: nn.Module, sentences: Sequence[Sequence[str]], src_vocab: Vocab, tgt_vocab: Vocab,
    max_steps: int = 30, batch_size: int = 128, device: torch.device | str = "cpu",
) -> list[list[str]]:
    """Greedy translations of many tokenized sentences, ``batch_size`` at a time.

    Gives the same tokens as :func:`greedy_decode` sentence by sentence (up to float
    rounding in exact ties), many times faster: every step runs the decoder once for the
    whole batch, and a sentence that has written <eos> simply stops collecting tokens.
    """
    check_int("batch_size", batch_size)
    _check_decoding(sentences, src_vocab, tgt_vocab, max_steps, many=True)
    model.eval()
    eos, pad = src_vocab[EOS], src_vocab[PAD]
    results: list[list[str]] = []
    for first in range(0, len(sentences), batch_size):
        chunk = [src_vocab[list(s)] + [eos] for s in sentences[first:first + batch_size]]
        lengths = torch.tensor([len(ids) for ids in chunk], device=device)
        src = torch.full((len(chunk), int(lengths.max())), pad, dtype=torch.long, device=device)
        for i, ids in enumerate(chunk):
            src[i, : len(ids)] = torch.tensor(ids, device=device)
        state = model.decoder.init_state(model.encoder(src, lengths), lengths)
        step = torch.full((len(chunk), 1), tgt_vocab[BOS], dtype=torch.long, device=device)
        written = []
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        for _ in range(max_steps):
            logits, state = model.decoder(step, state)  # (B, 1, V)
            _check_output_size(logits, src_vocab, tgt_vocab)
            step = logits[:, -1:].argmax(dim=-1)  # (B, 1)
            written.append(step[:, 0])
            done |= step[:, 0] == tgt_vocab[EOS]
            if bool(done.all()):
                break
        ids = torch.stack(written, dim=1).tolist()  # (B, steps)
        for row in ids:
            tokens = tgt_vocab.to_tokens(row)
            results.append(tokens[: tokens.index(EOS)] if EOS in tokens else tokens)
    return results


@torch.no_grad()
def beam_search(
    model: nn.Module, tokens: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, beam_size: int = 4,
    max_steps: int = 30, alpha: float = 0.75, device: torch.device | str = "cpu",
) -> list[str]:
    """Translate one sentence keeping the ``beam_size`` best partial translations.

    Candidates are ranked by total log-probability S divided by L**alpha, where L counts
    the tokens the model wrote *including* the final <eos> (its log-probability is part
    of S), so that short outputs are not favoured just for being short. The beams are
    pruned on the raw log-probability at every step, and the search stops once
    ``beam_size`` candidates have ended with <eos>; only the final ranking is normalized.
    This is the usual practical compromise, not an exact search.
    """
    _check_decoding(tokens, src_vocab, tgt_vocab, max_steps, many=False)
    check_int("beam_size", beam_size)
    if beam_size > len(tgt_vocab):  # each step keeps the best beam_size continuations of one token
        raise ValueError(f"beam_size must be at most the target vocabulary's size, {len(tgt_vocab)}, got {beam_size}")
    check_number("alpha", alpha)
    model.eval()
    state = _encode(model, tokens, src_vocab, device)
    eos = tgt_vocab[EOS]
    beams = [([tgt_vocab[BOS]], 0.0, state)]  # (token ids, log-probability, decoder state)
    finished: list[tuple[list[int], float, int]] = []  # (tokens without <bos>/<eos>, S, L)
    for _ in range(max_steps):
        candidates = []
        for ids, score, st in beams:
            logits, new_state = model.decoder(torch.tensor([[ids[-1]]], device=device), st)
            _check_output_size(logits, src_vocab, tgt_vocab)
            log_probs = F.log_softmax(logits[0, -1], dim=-1)  # (V,)
            top = log_probs.topk(beam_size)
            for lp, idx in zip(top.values.tolist(), top.indices.tolist()):
                candidates.append((ids + [idx], score + lp, new_state))
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = []
        for ids, score, st in candidates:
            if ids[-1] == eos:
                finished.append((ids[1:-1], score, len(ids) - 1))  # L counts <eos>
            else:
                beams.append((ids, score, st))
            if len(beams) == beam_size:
                break
        if not beams or len(finished) >= beam_size:
            break
    if not finished:  # nothing reached <eos> within max_steps: rank the unfinished beams
        finished = [(ids[1:], score, len(ids) - 1) for ids, score, _ in beams]
    best = max(finished, key=lambda f: f[1] / max(f[2], 1) ** alpha)
    return tgt_vocab.to_tokens(best[0])


def evaluate_bleu(
    model: nn.Module, sentences, src_vocab: Vocab, tgt_vocab: Vocab, decode: str = "greedy",
    beam_size: int = 4, device: torch.device | str = "cpu", alpha: float = 0.75, max_steps: int = 30,
    batch_size: int = 128,
) -> tuple[float, list[list[str]]]:
    """Corpus BLEU (sacrebleu, 0-100) of the model's translations of ``sentences``; also returns them.

    Greedy decoding runs ``batch_size`` sentences at a time (:func:`translate`); beam
    search one sentence at a time.
    """
    if decode not in ("greedy", "beam"):
        raise ValueError(f"decode must be 'greedy' or 'beam', got {decode!r}")
    for i, s in enumerate(sentences):
        if not hasattr(s, "en") or not hasattr(s, "fr"):
            raise TypeError(f"evaluate_bleu expects course_lib.corpus Sentence objects (with .en and .fr token lists); "
                            f"sentences[{i}] is a {type(s).__name__}")
    if decode == "greedy":
        outputs = translate(model, [s.en for s in sentences], src_vocab, tgt_vocab, max_steps, batch_size, device)
    else:
        outputs = [beam_search(model, s.en, src_vocab, tgt_vocab, beam_size, max_steps, alpha, device=device)
                   for s in sentences]
    return bleu(outputs, [list(s.fr) for s in sentences]), outputs


def length_buckets(sentences, edges: Sequence[int] = (6, 9, 12, 15)) -> list[tuple[str, list]]:
    """Group sentences by English length (tokens): [(label, sentences), ...].

    ``edges`` are the upper ends of the groups; a last, open group holds the longer ones:
    the default gives 1-6, 7-9, 10-12, 13-15 and 16+.
    """
    if list(edges) != sorted(set(edges)) or not edges or edges[0] < 1:
        raise ValueError(f"edges must be increasing positive lengths, got {edges}")
    groups, low = [], 0
    for high in edges:
        groups.append((f"{low + 1}-{high}", [s for s in sentences if low < len(s.en) <= high]))
        low = high
    groups.append((f"{low + 1}+", [s for s in sentences if len(s.en) > low]))
    return groups


__all__ = ["beam_search", "evaluate_bleu", "greedy_decode", "length_buckets", "translate"]
