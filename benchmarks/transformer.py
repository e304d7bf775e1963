"""Benchmark: the Transformer of chapter 5 against torch.nn.Transformer, and the decoder's cache.

    .venv/bin/python benchmarks/transformer.py [--quick] [--rounds N] [--device cpu|cuda]

Part 1, one training step (forward, cross-entropy loss, backward) of the whole
encoder-decoder on a padded batch of B source and B target sequences of T tokens:

* ``course_lib.build_transformer`` on the fused path (``impl="sdpa"``) and on the
  teaching path (``impl="manual"``), post-norm, ``use_bias=True``;
* PyTorch's ``torch.nn.Transformer`` (ReLU, batch first, post-norm) with the same sizes,
  given the same embedding, positional encoding and output layer, and our weights.
  ``nn.Transformer`` adds a final LayerNorm to both stacks even when post-norm; they are
  removed so that both models compute the same function (checked before timing, in
  eval mode). Its masks (source padding, causal target) are built in the timed code, as
  a caller must.

Part 2, greedy decoding of 30 tokens for a batch of B sentences (eval mode, no
gradients, encoder run once): our decoder one token per call with its key/value cache,
against the same decoder run over the whole prefix again at every step (no cache).
The two give the same tokens (checked).

Timings are round-robin medians (see benchmarks/attention.py); they are not tests.
Results go to stdout and to _build/benchmarks/transformer.csv.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import course_lib  # noqa: E402
from course_lib.benchmark import benchmark_parser, benchmark_setup  # noqa: E402
from attention import round_robin, save_table  # noqa: E402

CONFIGS = [  # B, T, D, H, layers (each stack), F (FFN hidden size), V (vocabulary)
    (32, 20, 128, 4, 2, 256, 1000),
    (32, 40, 256, 8, 3, 1024, 4000),
]
QUICK = CONFIGS[:1]
DECODE_STEPS = 30


def attention_into(theirs: nn.MultiheadAttention, ours: course_lib.MultiHeadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
    theirs.out_proj.weight.copy_(ours.W_o.weight)
    theirs.out_proj.bias.copy_(ours.W_o.bias)


def ffn_and_norms_into(layer: nn.Module, block: nn.Module, addnorms: list) -> None:
    layer.linear1.load_state_dict(block.ffn.dense1.state_dict())
    layer.linear2.load_state_dict(block.ffn.dense2.state_dict())
    for k, addnorm in enumerate(addnorms, 1):
        getattr(layer, f"norm{k}").load_state_dict(addnorm.ln.state_dict())


class TorchModel(nn.Module):
    """Embedding * sqrt(D) + positional encoding, torch.nn.Transformer, output layer: our weights, copied."""

    def __init__(self, ours: nn.Module, D: int, H: int, layers: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.D = D
        self.src_embedding = nn.Embedding.from_pretrained(ours.encoder.embedding.weight.detach().clone(), freeze=False)
        self.tgt_embedding = nn.Embedding.from_pretrained(ours.decoder.embedding.weight.detach().clone(), freeze=False)
        self.register_buffer("P", ours.encoder.pos_encoding.P.clone(), persistent=False)  # (1, L, D)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(D, H, layers, layers, ffn, dropout, batch_first=True)
        self.transformer.encoder.norm = None  # post-norm: no final LayerNorm, as in the paper and ours
        self.transformer.decoder.norm = None
        self.transformer.encoder.enable_nested_tensor = False  # padded positions computed, as ours does
        self.dense = nn.Linear(D, ours.decoder.dense.out_features)
        with torch.no_grad():
            for layer, blk in zip(self.transformer.encoder.layers, ours.encoder.blks):
                attention_into(layer.self_attn, blk.attention)
                ffn_and_norms_into(layer, blk, [blk.addnorm1, blk.addnorm2])
            for layer, blk in zip(self.transformer.decoder.layers, ours.decoder.blks):
                attention_into(layer.self_attn, blk.attention1)
                attention_into(layer.multihead_attn, blk.attention2)
                ffn_and_norms_into(layer, blk, [blk.addnorm1, blk.addnorm2, blk.addnorm3])
            self.dense.load_state_dict(ours.decoder.dense.state_dict())

    def embed(self, embedding: nn.Embedding, X: torch.Tensor) -> torch.Tensor:
        return self.dropout(embedding(X) * math.sqrt(self.D) + self.P[:, : X.shape[1]])

    def forward(self, src, tgt, src_valid_len):
        padding = torch.arange(src.shape[1], device=src.device).unsqueeze(0) >= src_valid_len.unsqueeze(1)  # True = pad
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        hidden = self.transformer(
            self.embed(self.src_embedding, src), self.embed(self.tgt_embedding, tgt), tgt_mask=causal,
            src_key_padding_mask=padding, memory_key_padding_mask=padding, tgt_is_causal=True,
        )
        return self.dense(hidden)


def batch(B, T, V, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, T), generator=g)
    tgt = torch.randint(4, V, (B, T), generator=g)
    valid = torch.randint(T // 2, T + 1, (B,), generator=g)
    return src.to(device), tgt.to(device), valid.to(device)


def bench_training(B, T, D, H, layers, ffn, V, device, rounds, dropout):
    torch.manual_seed(0)
    ours = course_lib.build_transformer(V, V, D, ffn, H, layers, dropout, use_bias=True, impl="sdpa").to(device)
    theirs = TorchModel(ours, D, H, layers, ffn, dropout).to(device)
    src, tgt, valid = batch(B, T, V, device)
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1)).to(device)
    ours.eval(), theirs.eval()
    with torch.no_grad():  # same weights, same function
        torch.testing.assert_close(ours(src, tgt, valid), theirs(src, tgt, valid), atol=1e-4, rtol=1e-4)
    ours.train(), theirs.train()

    def step(model, impl=None):
        if impl is not None:
            model.encoder.impl = model.decoder.impl = impl
        model.zero_grad(set_to_none=True)
        logits = model(src, tgt, valid)
        F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).backward()

    calls = {
        "torch": lambda: step(theirs),
        "ours_sdpa": lambda: step(ours, "sdpa"),
        "ours_manual": lambda: step(ours, "manual"),
    }
    return {name: s * 1e3 for name, s in round_robin(calls, device, rounds).items()}


@torch.no_grad()
def greedy(model, src, valid, bos, steps, cache):
    """Greedy decoding of ``steps`` tokens for a batch; with the cache or the whole prefix every step."""
    enc_outputs = model.encoder(src, valid)
    out = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    state = model.decoder.init_state(enc_outputs, valid)
    for _ in range(steps):
        if cache:
            logits, state = model.decoder(out[:, -1:], state)  # only the newest token
        else:
            logits, _ = model.decoder(out, model.decoder.init_state(enc_outputs, valid))  # the whole prefix
        out = torch.cat([out, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return out[:, 1:]


def bench_decoding(B, T, D, H, layers, ffn, V, device, rounds):
    torch.manual_seed(0)
    model = course_lib.build_transformer(V, V, D, ffn, H, layers, 0.0, use_bias=True, impl="sdpa").to(device).eval()
    src, _, valid = batch(B, T, V, device)
    with_cache = greedy(model, src, valid, 1, DECODE_STEPS, cache=True)
    assert torch.equal(with_cache, greedy(model, src, valid, 1, DECODE_STEPS, cache=False)), "cache changed the tokens"
    calls = {
        "cache": lambda: greedy(model, src, valid, 1, DECODE_STEPS, cache=True),
        "no_cache": lambda: greedy(model, src, valid, 1, DECODE_STEPS, cache=False),
    }
    return {name: s * 1e3 for name, s in round_robin(calls, device, rounds).items()}


def main() -> None:
    args = benchmark_parser(__doc__).parse_args()
    device, rounds, where = benchmark_setup(args)
    print(f"device: {where}; torch {torch.__version__}; median of {rounds} rounds, milliseconds\n")
    print(f"One training step (forward + loss + backward), dropout {args.dropout}\n")
    header = ["B", "T", "D", "H", "layers", "F", "V", "torch", "ours_sdpa", "ours_manual", "sdpa/torch", "manual/torch"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    rows = []
    configs = QUICK if args.quick else CONFIGS
    for cfg in configs:
        ms = bench_training(*cfg, device, rounds, args.dropout)
        row = list(cfg) + [f"{ms[k]:.2f}" for k in ("torch", "ours_sdpa", "ours_manual")]
        row += [f"{ms['ours_sdpa'] / ms['torch']:.2f}", f"{ms['ours_manual'] / ms['torch']:.2f}"]
        rows.append(row)
        print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print(f"\nGreedy decoding of {DECODE_STEPS} tokens for B sentences of T source tokens, fused path\n")
    dec_header = ["B", "T", "D", "H", "layers", "F", "V", "cache", "no_cache", "no_cache/cache"]
    print("| " + " | ".join(dec_header) + " |\n|" + "---|" * len(dec_header))
    dec_rows = []
    for cfg in configs:
        ms = bench_decoding(*cfg, device, max(3, rounds // 3))
        dec_rows.append(list(cfg) + [f"{ms['cache']:.1f}", f"{ms['no_cache']:.1f}", f"{ms['no_cache'] / ms['cache']:.2f}"])
        print("| " + " | ".join(str(x) for x in dec_rows[-1]) + " |", flush=True)
    print(f"\ntables saved to {save_table('transformer', [header, *rows], [dec_header, *dec_rows])}")


if __name__ == "__main__":
    main()
