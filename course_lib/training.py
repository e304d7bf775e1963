"""Training encoder–decoder models, shared by chapters 3, 5 and 6.

Shape legend: B batch, Tt target steps, V vocabulary size.

* ``shift_right`` and ``masked_ce_loss`` (teacher forcing, a loss over real tokens only,
  with optional label smoothing).
* Learning-rate schedules as multipliers of the base rate: ``constant_schedule``,
  ``warmup_schedule`` (linear warm-up, then 1/sqrt(step) decay, as in the Transformer
  paper) and ``linear_warmup``.
* ``fit``: Adam, gradient clipping, an optional schedule, an optional validation score
  after every epoch with early stopping, and a time budget; returns a ``History``.
* ``train_seq2seq``: chapter 3's interface to ``fit`` (returns the losses per epoch).
* ``ProgressBar`` and ``LiveLoss``: progress in place in a notebook, a line per epoch
  elsewhere.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import (
    check_bool,
    check_device,
    check_index_range,
    check_int,
    check_lengths,
    check_number,
    check_token_ids,
    check_vocab_has,
)
from course_lib.text import BOS, Vocab


def shift_right(tgt: Tensor, bos: int) -> Tensor:
    """Decoder input for teacher forcing: <bos> followed by the target without its last token.

    ``tgt`` (B, Tt) integer token ids; ``bos`` the id of ``<bos>``, an int.
    """
    check_token_ids(tgt, None, "shift_right", "tgt")
    check_int("bos", bos, minimum=0)
    return torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)


def masked_ce_loss(logits: Tensor, tgt: Tensor, tgt_valid_len: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the real target tokens (padding ignored). logits (B, Tt, V).

    With ``label_smoothing = eps`` the target distribution puts 1 - eps on the right token
    and spreads eps evenly over the whole vocabulary (PyTorch's convention).

    ``tgt`` holds integer ids in [0, V) at the real positions (before ``tgt_valid_len``);
    padded positions may hold anything. ``tgt_valid_len`` (B,) holds lengths in [0, Tt].
    A batch without any real token has a loss of 0 (not NaN), as ``masked_lm_loss``.
    Ids and lengths are range-checked on the CPU (see ``course_lib.masking``).
    """
    if not isinstance(label_smoothing, (int, float)) or isinstance(label_smoothing, bool) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating-point tensor (B, Tt, V), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)} {getattr(logits, 'dtype', '')}")
    check_token_ids(tgt, None, "masked_ce_loss", "tgt")
    if logits.shape[:2] != tgt.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(tgt.shape)}: expected (B, Tt, V) and (B, Tt)")
    if not isinstance(tgt_valid_len, Tensor) or tgt_valid_len.shape != tgt.shape[:1] or tgt_valid_len.dtype == torch.bool:
        raise ValueError(f"tgt_valid_len must be a tensor (B,) with B = {tgt.shape[0]}, got "
                         f"{getattr(tgt_valid_len, 'shape', tgt_valid_len)!r}")
    check_lengths(tgt_valid_len, 0, tgt.shape[1], "tgt_valid_len", f"Tt = {tgt.shape[1]} target positions")
    mask = torch.arange(tgt.shape[1], device=tgt.device).unsqueeze(0) < tgt_valid_len.unsqueeze(1)  # (B, Tt)
    tgt = torch.where(mask, tgt, torch.zeros_like(tgt))  # padding may hold anything: never read
    check_index_range(tgt, logits.shape[-1], "tgt", f"at the real positions, for a vocabulary of {logits.shape[-1]} tokens")
    losses = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none", label_smoothing=label_smoothing)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


# --- learning-rate schedules: step (1, 2, ...) -> multiplier of the base learning rate ---


def constant_schedule(step: int) -> float:
    """The base learning rate throughout."""
    return 1.0


def warmup_schedule(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then decay like 1/sqrt(step); 1.0 at the peak.

    The Transformer paper's rate is d_model**-0.5 * min(step**-0.5, step * warmup**-1.5);
    this is the same curve divided by its peak value, so the base learning rate given to
    the optimizer is the peak.
    """
    check_int("warmup_steps", warmup_steps)

    def schedule(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return schedule


def linear_warmup(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then the base learning rate."""
    check_int("warmup_steps", warmup_steps)
    return lambda step: min(max(step, 1) / warmup_steps, 1.0)


# --- progress display ---


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (not in a terminal IPython shell or plain Python)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class ProgressBar:
    """A one-line text progress bar, updated in place in a notebook (printed per epoch elsewhere)."""

    def __init__(self, title: str, total: int, width: int = 30) -> None:
        self.title, self.total, self.width, self._handle = title, total, width, None
        self._pretty = None
        if _in_notebook():
            from IPython.display import Pretty, display

            self._pretty = Pretty  # shown as plain text, without quotes
            self._handle = display(Pretty(self._text(0, "")), display_id=True)

    def _text(self, done: int, extra: str) -> str:
        filled = round(self.width * done / max(self.total, 1))
        return f"{self.title}: [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {extra}"

    def update(self, done: int, extra: str = "", epoch_end: bool = False) -> None:
        if self._handle is not None:
            self._handle.update(self._pretty(self._text(done, extra)))
        elif epoch_end:
            print(self._text(done, extra), flush=True)


class LiveLoss:
    """A loss curve redrawn as training goes (in a notebook); the final figure stays."""

    def __init__(self, title: str, every: int = 1) -> None:
        self.title, self.every, self.values, self._handle = title, every, [], None

    def update(self, epoch_loss: float) -> None:
        self.values.append(epoch_loss)
        if len(self.values) % self.every or not _in_notebook():
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig, ax = plt.subplots(figsize=(4.5, 2.8))
        ax.plot(range(1, len(self.values) + 1), self.values, "o-", ms=3)
        ax.set(xlabel="epoch", ylabel="training loss", title=self.title, yscale="log")
        ax.grid(True, alpha=0.3)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


# --- the training loop ---


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch.

    ``seconds`` is the cumulative training time at the end of each epoch (validation
    excluded), so that two models can be compared at equal training time.
    """

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    valid_scores: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)  # at the end of each epoch
    best_epoch: int | None = None  # 1-based; None without a validation score
    stopped_early: bool = False


def fit(
    model: nn.Module,
    loader,
    tgt_vocab: Vocab,
    num_epochs: int,
    lr: float = 0.005,
    device: torch.device | str = "cpu",
    grad_clip: float | None = 1.0,
    seed: int = 0,
    schedule: Callable[[int], float] | None = None,
    label_smoothing: float = 0.0,
    valid_fn: Callable[[nn.Module], float] | None = None,
    patience: int | None = None,
    restore_best: bool = True,
    time_budget: float | None = None,
    title: str = "training",
    show: bool = True,
) -> History:
    """Train an encoder–decoder with teacher forcing and Adam; return the ``History``.

    * ``loader`` yields ``(src, src_valid_len, tgt, tgt_valid_len)``; the model is called
      as ``model(src, tgt_in, src_valid_len)`` and returns logits (B, Tt, V).
    * ``seed`` fixes everything random in training: the order of the loader's shuffled
      batches (its generator is re-seeded) and dropout. The same starting weights and the
      same seed give the same result (on the same device and thread count).
    * ``schedule(step)`` multiplies ``lr`` at optimizer step 1, 2, ... (e.g. ``warmup_schedule``).
    * ``valid_fn(model)`` (higher is better, e.g. BLEU on a validation split) runs after
      every epoch, in eval mode. With ``patience = p``, training stops when the score has not
      improved for p epochs, and with ``restore_best`` the best epoch's weights are put back.
    * ``time_budget`` (seconds of training) stops after the epoch that exceeds it.
    * ``grad_clip``: None (no clipping) or the largest gradient norm, a number > 0
      (0 would scale every gradient to zero and train nothing).

    **The model is returned in evaluation mode** (``model.eval()``: no dropout), ready to
    be evaluated or decoded. To go on training it with a loop of your own, call
    ``model.train()`` first.

    Bad arguments raise a ``ValueError`` before training starts: sizes and rates out of
    range, a loader without batches or whose batches are not 4-tuples, a ``tgt_vocab``
    without ``<bos>``; a ``valid_fn`` that returns anything but a finite number (NaN, a
    string) raises after its first call. A training loss that is not finite (the training
    diverged) raises a ``FloatingPointError`` at once, before that step changes the weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit expects a torch.nn.Module to train, got {type(model).__name__}")
    check_int("num_epochs", num_epochs)
    device = check_device("device", device)
    check_number("lr", lr, positive=True)
    if grad_clip is not None:
        check_number("grad_clip", grad_clip, positive=True)
    check_int("seed", seed, minimum=0)
    check_vocab_has(tgt_vocab, (BOS,), "fit (tgt_vocab)")
    for name, fn in (("schedule", schedule), ("valid_fn", valid_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function or None, got {type(fn).__name__}")
    if schedule is not None:
        check_number("schedule(1)", schedule(1), minimum=0.0)
    if patience is not None and (valid_fn is None or not isinstance(patience, int) or isinstance(patience, bool)
                                 or patience < 1):
        raise ValueError(f"early stopping needs a valid_fn and patience an int >= 1, got patience={patience!r} "
                         f"and valid_fn={valid_fn!r}")
    check_bool("restore_best", restore_best)
    if time_budget is not None:
        check_number("time_budget", time_budget, positive=True)
    steps_per_epoch = _check_loader(loader)
    torch.manual_seed(seed)  # dropout, if the model has any
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)  # the same seed gives the same sequence of shuffled batches
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: schedule(i + 1)) if schedule else None
    bos = tgt_vocab[BOS]
    curve = LiveLoss(title) if show else None
    bar = ProgressBar(title, num_epochs * steps_per_epoch) if show else None
    history = History()
    best_state, best_score, elapsed = None, -math.inf, 0.0
    for epoch in range(num_epochs):
        start = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(loader, 1):
            if not isinstance(batch, (tuple, list)) or len(batch) != 4:
                raise ValueError("fit expects batches (src, src_valid_len, tgt, tgt_valid_len), got "
                                 f"{_describe_batch(batch)}; for other tasks (tagging, classification) write a loop")
            src, src_len, tgt, tgt_len = batch
            src, src_len, tgt, tgt_len = (t.to(device) for t in (src, src_len, tgt, tgt_len))
            logits = model(src, shift_right(tgt, bos), src_len)
            loss = masked_ce_loss(logits, tgt, tgt_len, label_smoothing)  # mean over the batch's real tokens
            value = loss.item()  # read once per step (the progress needs it): a diverged loss stops here,
            if not math.isfinite(value):  # before its NaN gradients reach the weights
                raise FloatingPointError(
                    f"fit: the training loss is {value} at batch {step} of epoch {epoch + 1} (the training diverged, "
                    f"or the model's outputs hold inf or NaN); the model keeps the weights of the last finite step, "
                    f"in training mode. Try a smaller lr (got {lr}) or gradient clipping (grad_clip={grad_clip})")
            optimizer.zero_grad()
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            tokens = int(tgt_len.sum())
            total, count = total + value * tokens, count + tokens  # epoch mean per token
            if bar is not None and (step % 10 == 0 or step == steps_per_epoch):
                bar.update(epoch * steps_per_epoch + step, f"batches, epoch {epoch + 1}/{num_epochs}, "
                           f"loss {total / count:.3f}", epoch_end=step == steps_per_epoch)
        elapsed += time.perf_counter() - start
        if count == 0:
            raise ValueError(f"epoch {epoch + 1}: the loader's targets hold no token (every tgt_valid_len is 0)")
        history.losses.append(total / count)
        history.seconds.append(elapsed)
        history.learning_rates.append(optimizer.param_groups[0]["lr"])
        if curve is not None:
            curve.update(history.losses[-1])
        if valid_fn is not None:
            model.eval()
            score = valid_fn(model)
            if isinstance(score, Tensor) and score.numel() == 1:
                score = score.item()
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                raise ValueError(f"valid_fn must return a finite number, higher is better (e.g. BLEU), got {score!r} "
                                 f"after epoch {epoch + 1}")
            score = float(score)
            history.valid_scores.append(score)
            if score > best_score:
                best_score, history.best_epoch = score, epoch + 1
                if restore_best and patience is not None:
                    best_state = copy.deepcopy(model.state_dict())
            elif patience is not None and epoch + 1 - history.best_epoch >= patience:
                history.stopped_early = True
                break
        if time_budget is not None and elapsed >= time_budget:
            break
    if best_state is not None and history.best_epoch != len(history.losses):
        model.load_state_dict(best_state)
    if show:
        extra = f", best validation score {best_score:.1f} at epoch {history.best_epoch}" if valid_fn else ""
        print(f"{title}: {len(history.losses)} epochs in {elapsed:.0f} s, "
              f"loss {history.losses[0]:.3f} -> {history.losses[-1]:.3f}{extra}")
    model.eval()
    return history


def _describe_batch(batch: object) -> str:
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)} items"
    return f"a {type(batch).__name__}"


def _check_loader(loader: object) -> int:
    """Number of batches per epoch of a loader with ``len``; an empty loader is refused."""
    try:
        steps = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"loader must be a DataLoader (or any iterable with len()) of batches "
                        f"(src, src_valid_len, tgt, tgt_valid_len), got {type(loader).__name__}") from None
    if steps == 0:
        raise ValueError("loader has no batch: an empty data set, or drop_last=True with fewer examples than one batch")
    return steps


def train_seq2seq(
    model: nn.Module,
    loader,
    tgt_vocab: Vocab,
    num_epochs: int,
    lr: float = 0.005,
    device: torch.device | str = "cpu",
    grad_clip: float = 1.0,
    seed: int = 0,
    title: str = "training",
    show: bool = True,
) -> list[float]:
    """Train with teacher forcing, Adam and gradient clipping; return the mean loss per epoch.

    Chapter 3's interface to :func:`fit` (which adds schedules, validation, early
    stopping and time budgets). ``seed`` fixes the batches' order and dropout.
    """
    return fit(model, loader, tgt_vocab, num_epochs, lr, device, grad_clip, seed, title=title, show=show).losses


__all__ = [
    "History", "LiveLoss", "ProgressBar", "constant_schedule", "fit", "linear_warmup", "masked_ce_loss",
    "shift_right", "train_seq2seq", "warmup_schedule",
]
