"""Chapter 6: BERT's pretraining losses (Devlin et al., 2019).

:func:`masked_lm_loss` averages the cross-entropy over the real prediction positions
only (d2l 1.0.3's ``_get_batch_loss_bert`` multiplies its weights with a loss that is
already averaged over every slot, so they cancel out: it returns the plain mean over all
B P slots, padded ones included; d2l issue #2582; a label of -100, Hugging Face's "no
target", does not count either). :func:`pretraining_loss` adds the next-sentence loss.
Both take the batches of ``course_lib.bert_data``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import check_index_range, host_checks_allowed, is_integer_tensor
from course_lib.bert_data import IGNORE_INDEX


def masked_lm_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy of the masked language model over the real prediction positions only.

    ``logits`` (B, P, V) floating point, ``labels`` (B, P) integer, ``weights`` (B, P):
    1 (or any positive weight) for a real prediction, 0 for padding; None means 1
    everywhere. A label of ``IGNORE_INDEX`` (-100, Hugging Face's and PyTorch's "no
    target") also marks a slot without a prediction, whatever its weight. Padded slots
    are dropped before the cross-entropy is computed, so whatever their logits and labels
    hold (even inf or nan) they change neither the loss nor the gradient. The labels of
    the real slots must be in [0, V) and the weights finite and >= 0 (checked on the
    CPU). ``"mean"``: the weighted mean over the real slots (0 when there is none);
    ``"sum"``: the weighted sum (for a mean over several processes' batches).
    """
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating-point tensor (B, P, V), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)} {getattr(logits, 'dtype', '')}")
    if weights is None and isinstance(labels, Tensor):
        weights = torch.ones(labels.shape, dtype=logits.dtype, device=logits.device)
    if not is_integer_tensor(labels) or labels.shape != logits.shape[:2] or not isinstance(weights, Tensor) \
            or weights.shape != labels.shape:
        raise ValueError(f"expected logits (B, P, V), integer labels and weights (B, P); got "
                         f"{tuple(logits.shape)}, {getattr(labels, 'shape', labels)!r} {getattr(labels, 'dtype', '')}, "
                         f"{getattr(weights, 'shape', weights)!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    weights = torch.where(labels == IGNORE_INDEX, torch.zeros_like(weights), weights)  # "no target": not counted
    if weights.numel() and host_checks_allowed(weights):
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"weights must be finite and >= 0 (1 for a real prediction, 0 for padding), got values "
                             f"from {weights.min().item()} to {weights.max().item()}")
        check_index_range(torch.where(weights > 0, labels, torch.zeros_like(labels)), logits.shape[-1], "labels",
                          f"at the real prediction slots, for a vocabulary of {logits.shape[-1]} tokens")
    keep = (weights > 0).reshape(-1)
    w = weights.reshape(-1)[keep].to(logits.dtype)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep], reduction="none")
    total = (ce * w).sum()
    return total if reduction == "sum" else total / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def pretraining_loss(net: nn.Module, tokens: Tensor, segments: Tensor, valid_lens: Tensor, pred_positions: Tensor,
                     mlm_weights: Tensor, mlm_labels: Tensor, nsp_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(mlm_loss, nsp_loss, mlm_loss + nsp_loss)`` of one batch, each a mean (see :func:`masked_lm_loss`).

    ``nsp_labels`` (B,) holds 0 or 1 (1: the true next sentence); checked on the CPU.
    """
    if not is_integer_tensor(nsp_labels) or nsp_labels.dim() != 1:
        raise ValueError(f"nsp_labels must be an integer tensor (B,) of 0 and 1, got "
                         f"{getattr(nsp_labels, 'shape', nsp_labels)!r} {getattr(nsp_labels, 'dtype', '')}")
    check_index_range(nsp_labels, 2, "nsp_labels", "(1: the true next sentence, 0: a random one)")
    _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens.reshape(-1), pred_positions)
    mlm_l = masked_lm_loss(mlm_Y_hat, mlm_labels, mlm_weights)
    nsp_l = F.cross_entropy(nsp_Y_hat, nsp_labels)
    return mlm_l, nsp_l, mlm_l + nsp_l

