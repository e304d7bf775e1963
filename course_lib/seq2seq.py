"""Chapter 3: sequence-to-sequence translation with an RNN encoder and Bahdanau attention.

Shape legend: B batch, Ts source steps, Tt target steps, E embedding size, D hidden size
(``num_hiddens``; D is a model's size throughout the book), L layers, V vocabulary size.
As in d2l, RNN tensors are time-major: (T, B, D).

* ``Seq2SeqEncoder``: embeds the source and runs a GRU; returns all outputs (Ts, B, D)
  and the final state (L, B, D). Same constructor and parameter names as d2l 1.0.3.
* ``Seq2SeqDecoder``: the plain decoder: the encoder's last state is the only context,
  the same at every step (the bottleneck).
* ``Seq2SeqAttentionDecoder``: Bahdanau attention: at every step the decoder's previous
  hidden state queries all encoder outputs (additive attention), and the context is fed
  with the embedded previous token. Parameter names as in d2l's book.
* ``EncoderDecoder``: the pair; ``forward(src, tgt_in, src_valid_len) -> logits (B, Tt, V)``.

Inputs are checked with errors that name the argument: token ids (B, T) of an integer
dtype in [0, vocab_size) (values on the CPU only, see ``course_lib.masking``), the
encoder's ``valid_lens`` (B,) in [1, Ts], and a decoder state built from a batch of the
same size as the target.

Training (``train_seq2seq``, ``fit``) is in ``course_lib.training`` and decoding
(``greedy_decode``, ``beam_search``, ``translate``, ``evaluate_bleu``) in
``course_lib.decoding``, shared with the later chapters; both are re-exported here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib._checks import check_int, check_lengths, check_token_ids
from course_lib.attention_scoring import AdditiveAttention


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        check_int(name, value)


def _check_step_input(X: Tensor, embedding: nn.Embedding, batch: int, who: str) -> None:
    """Target ids (B, Tt) in the vocabulary, for a state built from a batch of the same size."""
    check_token_ids(X, embedding.num_embeddings, who)
    if X.shape[0] != batch:
        raise ValueError(f"{who}: the decoder state was built for a batch of {batch} sequences (init_state), but the "
                         f"target holds {X.shape[0]}: build the state from the same batch of sources")


def _check_encoder_outputs(enc_all_outputs: object, who: str) -> None:
    """An RNN encoder's ``(outputs (Ts, B, H), state (L, B, H))``."""
    if not isinstance(enc_all_outputs, (tuple, list)) or len(enc_all_outputs) != 2 \
            or not all(isinstance(t, Tensor) and t.dim() == 3 for t in enc_all_outputs):
        raise ValueError(f"{who}.init_state expects the RNN encoder's (outputs (Ts, B, H), state (L, B, H)), got "
                         f"{type(enc_all_outputs).__name__} (a Transformer encoder's outputs do not fit an RNN decoder)")


def _check_state(state: object, size: int, who: str) -> None:
    """The list that ``init_state`` (or the previous step) returned."""
    if not isinstance(state, (list, tuple)) or len(state) != size \
            or not all(isinstance(t, Tensor) for t in state[:2]):
        raise ValueError(f"{who}: the decoder state must be the list of {size} items that {who}.init_state (or the "
                         f"previous step) returned, got {type(state).__name__}"
                         + (f" of {len(state)} items" if isinstance(state, (list, tuple)) else ""))


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

    def __init__(self, num_inputs: int, num_hiddens: int, num_layers: int, dropout: float = 0.0,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = nn.GRU(num_inputs, num_hiddens, num_layers, dropout=dropout, bidirectional=bidirectional)

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.rnn(inputs, state)


class Seq2SeqEncoder(nn.Module):
    """RNN encoder: (B, Ts) token indices -> outputs (Ts, B, D), state (L, B, D).

    With ``bidirectional=True`` (as in Bahdanau et al., 2014) a second GRU reads the
    sentence right to left; each direction has D/2 units, and the outputs and final
    states of the two are concatenated, so the shapes stay (Ts, B, D) and (L, B, D): the
    output at position t then knows the words on both sides of t. The default, one
    left-to-right GRU, is d2l's encoder (same parameter names).
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0,
                 bidirectional: bool = False) -> None:
        super().__init__()
        _check_sizes(vocab_size=vocab_size, embed_size=embed_size, num_hiddens=num_hiddens, num_layers=num_layers)
        if bidirectional and num_hiddens % 2:
            raise ValueError(f"a bidirectional encoder splits num_hiddens between two directions; got odd {num_hiddens}")
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = _GRU(embed_size, num_hiddens // 2 if bidirectional else num_hiddens, num_layers, dropout,
                        bidirectional)
        self.apply(init_seq2seq)

    def _merge_directions(self, state: Tensor) -> Tensor:
        """(2L, B, D/2), directions interleaved per layer -> (L, B, D): [forward; backward] per layer."""
        if not self.bidirectional:
            return state
        two_l, batch, half = state.shape
        return state.view(two_l // 2, 2, batch, half).permute(0, 2, 1, 3).reshape(two_l // 2, batch, 2 * half)

    def forward(self, X: Tensor, valid_lens: Tensor | None = None, *args) -> tuple[Tensor, Tensor]:
        """With ``valid_lens`` the GRU stops at each sentence's last real token (a packed
        sequence): the final state then summarizes the sentence, not its padding, and
        padded positions output zeros. Without it, it runs over every position, as d2l's."""
        check_token_ids(X, self.embedding.num_embeddings, "Seq2SeqEncoder")
        embs = self.embedding(X.t().long())  # (Ts, B, E)
        if valid_lens is None:
            outputs, state = self.rnn(embs)  # outputs (Ts, B, D), state (L, B, D)
            return outputs, self._merge_directions(state)
        if not isinstance(valid_lens, Tensor) or valid_lens.shape != X.shape[:1] or valid_lens.dtype.is_floating_point:
            raise ValueError(f"valid_lens must be None or an integer tensor (B,) with B = {X.shape[0]}, got "
                             f"{getattr(valid_lens, 'shape', valid_lens)!r} {getattr(valid_lens, 'dtype', '')}")
        check_lengths(valid_lens, 1, X.shape[1], "valid_lens", f"at least one token, at most Ts = {X.shape[1]}")
        packed = nn.utils.rnn.pack_padded_sequence(embs, valid_lens.cpu(), enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, total_length=X.shape[1])  # (Ts, B, D)
        return outputs, self._merge_directions(state)


class Seq2SeqDecoder(nn.Module):
    """Plain RNN decoder: the encoder's final state, the same context at every step."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_sizes(vocab_size=vocab_size, embed_size=embed_size, num_hiddens=num_hiddens, num_layers=num_layers)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = _GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.apply(init_seq2seq)

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], *args) -> list[Tensor]:
        _check_encoder_outputs(enc_all_outputs, "Seq2SeqDecoder")
        _, hidden = enc_all_outputs
        # The context: the encoder's final state at the last real token (top layer), (B, D).
        return [hidden[-1], hidden]

    def forward(self, X: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        _check_state(state, 2, "Seq2SeqDecoder")
        context, hidden = state
        _check_step_input(X, self.embedding, hidden.shape[1], "Seq2SeqDecoder")
        embs = self.embedding(X.t().long())  # (Tt, B, E)
        fixed = context.unsqueeze(0).expand(embs.shape[0], -1, -1)  # (Tt, B, D): the same vector every step
        outputs, hidden = self.rnn(torch.cat([embs, fixed], dim=-1), hidden)  # (Tt, B, D)
        return self.dense(outputs).transpose(0, 1), [context, hidden]  # (B, Tt, V)


def gru_step(rnn: nn.GRU, x: Tensor, hidden: Tensor) -> Tensor:
    """One time step of ``rnn`` (an ``nn.GRU``), with its own weights: x (B, I), hidden (L, B, D) -> (L, B, D).

    The same function as ``rnn(x.unsqueeze(0), hidden)[1]``: layer l's cell takes the
    output of layer l - 1 (with the GRU's dropout between layers in training mode). A
    decoder that must run one step at a time (its next input depends on this step) calls
    the cell directly: ``torch.gru_cell`` does less work per call than ``nn.GRU``'s
    machinery for a sequence of length one.
    """
    states = []
    for layer in range(rnn.num_layers):
        h = torch.gru_cell(x, hidden[layer], getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}"),
                           getattr(rnn, f"bias_ih_l{layer}", None), getattr(rnn, f"bias_hh_l{layer}", None))  # (B, D)
        states.append(h)
        x = nn.functional.dropout(h, rnn.dropout, rnn.training) if layer < rnn.num_layers - 1 else h
    return torch.stack(states)  # (L, B, D)


class Seq2SeqAttentionDecoder(nn.Module):
    """Bahdanau decoder: at each step, additive attention of the previous hidden state
    over all encoder outputs gives the context (equation 3.3 of the chapter)."""

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_sizes(vocab_size=vocab_size, embed_size=embed_size, num_hiddens=num_hiddens, num_layers=num_layers)
        self.attention = AdditiveAttention(num_hiddens, dropout, query_size=num_hiddens, key_size=num_hiddens)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.apply(init_seq2seq)
        self._attention_weights: list[Tensor] = []

    def init_state(self, enc_all_outputs: tuple[Tensor, Tensor], enc_valid_lens: Tensor | None = None, *args) -> list:
        _check_encoder_outputs(enc_all_outputs, "Seq2SeqAttentionDecoder")
        outputs, hidden = enc_all_outputs
        if enc_valid_lens is not None:
            num_steps, batch = outputs.shape[:2]
            if not isinstance(enc_valid_lens, Tensor) or enc_valid_lens.shape != (batch,) \
                    or enc_valid_lens.dtype.is_floating_point or enc_valid_lens.dtype == torch.bool:
                raise ValueError(f"enc_valid_lens must be None or an integer tensor (B,) with B = {batch}, got "
                                 f"{getattr(enc_valid_lens, 'shape', enc_valid_lens)!r} "
                                 f"{getattr(enc_valid_lens, 'dtype', '')}")
            check_lengths(enc_valid_lens, 1, num_steps, "enc_valid_lens",
                          f"at least one token, at most Ts = {num_steps}")
        return [outputs.permute(1, 0, 2), hidden, enc_valid_lens]  # keys/values batch-first: (B, Ts, D)

    def forward(self, X: Tensor, state: list) -> tuple[Tensor, list]:
        _check_state(state, 3, "Seq2SeqAttentionDecoder")
        enc_outputs, hidden, enc_valid_lens = state
        _check_step_input(X, self.embedding, enc_outputs.shape[0], "Seq2SeqAttentionDecoder")
        embs = self.embedding(X.t().long())  # (Tt, B, E)
        # The keys' half of every score, W_k h_t, is the same at every step: project once.
        keys = self.attention.W_k(enc_outputs)  # (B, Ts, D)
        outputs, self._attention_weights = [], []
        for x in embs:  # one target step at a time: the query depends on the previous step
            query = hidden[-1].unsqueeze(1)  # (B, 1, D): the previous hidden state
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens, projected_keys=keys)  # (B, 1, D)
            hidden = gru_step(self.rnn, torch.cat([context.squeeze(1), x], dim=-1), hidden)  # input (B, D + E)
            outputs.append(hidden[-1])  # (B, D): the top layer's new state
            self._attention_weights.append(self.attention.attention_weights)  # (B, 1, Ts)
        logits = self.dense(torch.stack(outputs))  # (Tt, B, V)
        return logits.transpose(0, 1), [enc_outputs, hidden, enc_valid_lens]

    def step_alignment(self) -> Tensor:
        """Attention over the source at the last step of the last forward call, (B, Ts)."""
        return self.attention_weights[:, -1]

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


# Training and decoding live in their own modules, shared with chapters 5 and 6; chapter 3
# imports them from here too.
from course_lib.decoding import beam_search, evaluate_bleu, greedy_decode, length_buckets, translate  # noqa: E402
from course_lib.training import masked_ce_loss, shift_right, train_seq2seq  # noqa: E402

__all__ = [
    "EncoderDecoder", "Seq2SeqAttentionDecoder", "Seq2SeqDecoder", "Seq2SeqEncoder", "beam_search",
    "evaluate_bleu", "greedy_decode", "gru_step", "init_seq2seq", "length_buckets", "masked_ce_loss", "shift_right",
    "train_seq2seq", "translate",
]
