"""Chapter 3: sequence-to-sequence translation with an RNN encoder and Bahdanau attention.

Shape legend: B batch, Ts source steps, Tt target steps, E embedding size, H hidden size,
L layers, V vocabulary size. As in d2l, RNN tensors are time-major: (T, B, H).

* ``Seq2SeqEncoder``: embeds the source and runs a GRU; returns all outputs (Ts, B, H)
  and the final state (L, B, H). Same constructor and parameter names as d2l 1.0.3.
* ``Seq2SeqDecoder``: the plain decoder: the encoder's last state is the only context,
  the same at every step (the bottleneck).
* ``Seq2SeqAttentionDecoder``: Bahdanau attention: at every step the decoder's previous
  hidden state queries all encoder outputs (additive attention), and the context is fed
  with the embedded previous token. Parameter names as in d2l's book.
* ``EncoderDecoder``: the pair; ``forward(src, tgt_in, src_valid_len) -> logits (B, Tt, V)``.
* ``train_seq2seq``: teacher forcing, masked loss, gradient clipping, a live loss curve.
* ``greedy_decode``, ``beam_search`` and ``evaluate_bleu`` for prediction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.attention_scoring import AdditiveAttention
from course_lib.text import BOS, EOS, Vocab, bleu


def init_seq2seq(module: nn.Module) -> None:
    """Xavier-uniform initialization of linear and GRU weights, as d2l does."""
    if type(module) is nn.Linear:
        nn.init.xavier_uniform_(module.weight)
    if type(module) is nn.GRU:
        for name in module._flat_weights_names:
            if "weight" in name:
                nn.init.xavier_uniform_(module._parameters[name])


class _GRU(nn.Module):
    """A GRU held as ``self.rnn``, so parameter names match d2l's ``rnn.rnn.*``."""

    def __init__(self, num_inputs: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = nn.GRU(num_inputs, num_hiddens, num_layers, dropout=dropout)

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.rnn(inputs, state)


class Seq2SeqEncoder(nn.Module):
    """RNN encoder: (B, Ts) token indices -> outputs (Ts, B, H), state (L, B, H)."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = _GRU(embed_size, num_hiddens, num_layers, dropout)
        self.apply(init_seq2seq)

    def forward(self, X: Tensor, valid_lens: Tensor | None = None, *args) -> tuple[Tensor, Tensor]:
        """With ``valid_lens`` the GRU stops at each sentence's last real token (a packed
        sequence): the final state then summarizes the sentence, not its padding, and
        padded positions output zeros. Without it, it runs over every position, as d2l's."""
        if X.dim() != 2:
            raise ValueError(f"the encoder expects token indices of shape (B, Ts), got {tuple(X.shape)}")
        embs = self.embedding(X.t().long())  # (Ts, B, E)
        if valid_lens is None:
            return self.rnn(embs)  # outputs (Ts, B, H), state (L, B, H)
        packed = nn.utils.rnn.pack_padded_sequence(embs, valid_lens.cpu(), enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, total_length=X.shape[1])  # (Ts, B, H)
        return outputs, state


class Seq2SeqDecoder(nn.Module):
    """Plain RNN decoder: the encoder's final state, the same context at every step."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = _GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.apply(init_seq2seq)

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], *args) -> list[Tensor]:
        _, hidden = enc_all_outputs
        # The context: the encoder's final state at the last real token (top layer), (B, H).
        return [hidden[-1], hidden]

    def forward(self, X: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        context, hidden = state
        embs = self.embedding(X.t().long())  # (Tt, B, E)
        fixed = context.unsqueeze(0).expand(embs.shape[0], -1, -1)  # (Tt, B, H): the same vector every step
        outputs, hidden = self.rnn(torch.cat([embs, fixed], dim=-1), hidden)  # (Tt, B, H)
        return self.dense(outputs).transpose(0, 1), [context, hidden]  # (B, Tt, V)


class Seq2SeqAttentionDecoder(nn.Module):
    """Bahdanau decoder: at each step, additive attention of the previous hidden state
    over all encoder outputs gives the context (equation 3.3 of the chapter)."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = AdditiveAttention(num_hiddens, dropout, query_size=num_hiddens, key_size=num_hiddens)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.apply(init_seq2seq)
        self._attention_weights: list[Tensor] = []

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], enc_valid_lens: Tensor | None = None, *args) -> list:
        outputs, hidden = enc_all_outputs
        return [outputs.permute(1, 0, 2), hidden, enc_valid_lens]  # keys/values batch-first: (B, Ts, H)

    def forward(self, X: Tensor, state: list) -> tuple[Tensor, list]:
        enc_outputs, hidden, enc_valid_lens = state
        embs = self.embedding(X.t().long())  # (Tt, B, E)
        outputs, self._attention_weights = [], []
        for x in embs:  # one target step at a time: the query depends on the previous step
            query = hidden[-1].unsqueeze(1)  # (B, 1, H): the previous hidden state
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)  # (B, 1, H)
            step_in = torch.cat([context, x.unsqueeze(1)], dim=-1).permute(1, 0, 2)  # (1, B, H + E)
            out, hidden = self.rnn(step_in, hidden)  # (1, B, H)
            outputs.append(out)
            self._attention_weights.append(self.attention.attention_weights)  # (B, 1, Ts)
        logits = self.dense(torch.cat(outputs, dim=0))  # (Tt, B, V)
        return logits.transpose(0, 1), [enc_outputs, hidden, enc_valid_lens]

    @property
    def attention_weights(self) -> Tensor:
        """Weights of the last forward call, (B, Tt, Ts): one row per target step."""
        if not self._attention_weights:
            raise RuntimeError("no attention weights yet: run the decoder first")
        return torch.cat(self._attention_weights, dim=1)


class EncoderDecoder(nn.Module):
    """Encoder and decoder together: forward(src (B, Ts), tgt_in (B, Tt), src_valid_len (B,)) -> (B, Tt, V)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src: Tensor, tgt_in: Tensor, src_valid_len: Tensor | None = None) -> Tensor:
        state = self.decoder.init_state(self.encoder(src, src_valid_len), src_valid_len)
        return self.decoder(tgt_in, state)[0]


def shift_right(tgt: Tensor, bos: int) -> Tensor:
    """Decoder input for teacher forcing: <bos> followed by the target without its last token."""
    return torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)


def masked_ce_loss(logits: Tensor, tgt: Tensor, tgt_valid_len: Tensor) -> Tensor:
    """Mean cross-entropy over the real target tokens (padding ignored). logits (B, Tt, V)."""
    mask = torch.arange(tgt.shape[1], device=tgt.device).unsqueeze(0) < tgt_valid_len.unsqueeze(1)  # (B, Tt)
    losses = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")  # (B, Tt)
    return (losses * mask).sum() / mask.sum()


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
        if len(self.values) % self.every:
            return
        import matplotlib.pyplot as plt

        if not _in_notebook():
            return
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


def train_seq2seq(
    model: EncoderDecoder,
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

    ``seed`` fixes everything random in training: the order of the loader's shuffled
    batches (its generator is re-seeded) and dropout. Two models that start from the same
    weights and train with the same seed see the same batches and end with the same
    weights (on the same device and thread count).

    Shows a progress bar (in a notebook, one line updated in place; elsewhere a line per
    epoch) and, in a notebook, redraws a loss curve after every epoch.
    """
    torch.manual_seed(seed)  # dropout, if the model has any
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)  # the same seed gives the same sequence of shuffled batches
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    bos = tgt_vocab[BOS]
    curve = LiveLoss(title) if show else None
    steps_per_epoch = len(loader)
    bar = ProgressBar(title, num_epochs * steps_per_epoch) if show else None
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(num_epochs):
        total, count = 0.0, 0
        for step, (src, src_len, tgt, tgt_len) in enumerate(loader, 1):
            src, src_len, tgt, tgt_len = (t.to(device) for t in (src, src_len, tgt, tgt_len))
            logits = model(src, shift_right(tgt, bos), src_len)
            loss = masked_ce_loss(logits, tgt, tgt_len)  # mean over the batch's real tokens
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            tokens = int(tgt_len.sum())
            total, count = total + loss.item() * tokens, count + tokens  # epoch mean per token
            if bar is not None and (step % 10 == 0 or step == steps_per_epoch):
                bar.update(epoch * steps_per_epoch + step, f"batches, epoch {epoch + 1}/{num_epochs}, "
                           f"loss {total / count:.3f}", epoch_end=step == steps_per_epoch)
        losses.append(total / count)
        if curve is not None:
            curve.update(losses[-1])
    if show:
        print(f"{title}: {num_epochs} epochs in {time.perf_counter() - start:.0f} s, "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    model.eval()
    return losses


def _encode(model: EncoderDecoder, tokens: Sequence[str], src_vocab: Vocab, device) -> tuple[list, Tensor]:
    ids = torch.tensor([src_vocab[list(tokens)] + [src_vocab[EOS]]], device=device)  # (1, Ts)
    valid = torch.tensor([ids.shape[1]], device=device)
    return model.decoder.init_state(model.encoder(ids, valid), valid), ids


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoder, tokens: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, max_steps: int = 30,
    device: torch.device | str = "cpu",
) -> tuple[list[str], Tensor | None]:
    """Translate one tokenized sentence by taking the most likely token at each step.

    Returns the output tokens (without <eos>) and, for an attention decoder, the
    attention weights (output steps, source tokens + <eos>).
    """
    model.eval()
    state, _ = _encode(model, tokens, src_vocab, device)
    step = torch.tensor([[tgt_vocab[BOS]]], device=device)
    out, weights = [], []
    for _ in range(max_steps):
        logits, state = model.decoder(step, state)  # (1, 1, V)
        if isinstance(model.decoder, Seq2SeqAttentionDecoder):
            weights.append(model.decoder.attention_weights[0, -1])
        step = logits.argmax(dim=-1)  # (1, 1)
        token = tgt_vocab.to_tokens(int(step))
        if token == EOS:
            break
        out.append(token)
    return out, (torch.stack(weights) if weights else None)


@torch.no_grad()
def beam_search(
    model: EncoderDecoder, tokens: Sequence[str], src_vocab: Vocab, tgt_vocab: Vocab, beam_size: int = 4,
    max_steps: int = 30, alpha: float = 0.75, device: torch.device | str = "cpu",
) -> list[str]:
    """Translate one sentence keeping the ``beam_size`` best partial translations.

    Candidates are ranked by total log-probability divided by length**alpha (length
    normalization, so that short outputs are not favoured just for being short). The
    beams are pruned on the raw log-probability at every step, and the search stops once
    ``beam_size`` candidates have ended with <eos>; only the final ranking is normalized.
    This is the usual practical compromise, not an exact search.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    model.eval()
    state, _ = _encode(model, tokens, src_vocab, device)
    eos = tgt_vocab[EOS]
    beams = [([tgt_vocab[BOS]], 0.0, state)]  # (token ids, log-probability, decoder state)
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_steps):
        candidates = []
        for ids, score, st in beams:
            logits, new_state = model.decoder(torch.tensor([[ids[-1]]], device=device), st)
            log_probs = F.log_softmax(logits[0, -1], dim=-1)  # (V,)
            top = log_probs.topk(beam_size)
            for lp, idx in zip(top.values.tolist(), top.indices.tolist()):
                candidates.append((ids + [idx], score + lp, new_state))
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = []
        for ids, score, st in candidates:
            if ids[-1] == eos:
                finished.append((ids[1:-1], score))
            else:
                beams.append((ids, score, st))
            if len(beams) == beam_size:
                break
        if not beams or len(finished) >= beam_size:
            break
    if not finished:  # nothing reached <eos> within max_steps: rank the unfinished beams
        finished = [(ids[1:], score) for ids, score, _ in beams]
    best = max(finished, key=lambda f: f[1] / max(len(f[0]) + 1, 1) ** alpha)
    return tgt_vocab.to_tokens(best[0])


def evaluate_bleu(
    model: EncoderDecoder, sentences, src_vocab: Vocab, tgt_vocab: Vocab, decode: str = "greedy",
    beam_size: int = 4, device: torch.device | str = "cpu", alpha: float = 0.75, max_steps: int = 30,
) -> tuple[float, list[list[str]]]:
    """Corpus BLEU (sacrebleu, 0-100) of the model's translations of ``sentences``; also returns them."""
    if decode not in ("greedy", "beam"):
        raise ValueError(f"decode must be 'greedy' or 'beam', got {decode!r}")
    outputs = []
    for s in sentences:
        if decode == "greedy":
            outputs.append(greedy_decode(model, s.en, src_vocab, tgt_vocab, max_steps, device=device)[0])
        else:
            outputs.append(beam_search(model, s.en, src_vocab, tgt_vocab, beam_size, max_steps, alpha, device=device))
    return bleu(outputs, [list(s.fr) for s in sentences]), outputs


def length_buckets(sentences, edges: Sequence[int] = (6, 9, 12, 15, 100)) -> list[tuple[str, list]]:
    """Group sentences by English length (tokens): [(label, sentences), ...]."""
    groups, low = [], 0
    for high in edges:
        members = [s for s in sentences if low < len(s.en) <= high]
        label = f"{low + 1}-{high}" if high < 100 else f"{low + 1}+"
        groups.append((label, members))
        low = high
    return groups


__all__ = [
    "EncoderDecoder", "Seq2SeqAttentionDecoder", "Seq2SeqDecoder", "Seq2SeqEncoder", "beam_search",
    "evaluate_bleu", "greedy_decode", "init_seq2seq", "length_buckets", "masked_ce_loss", "shift_right",
    "train_seq2seq",
]
