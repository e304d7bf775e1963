"""Benchmark: BERT pretraining throughput, the fused attention path against the teaching path.

    .venv/bin/python benchmarks/bert.py [--quick] [--rounds N] [--device cpu|cuda]

One pretraining step (forward, masked-LM and next-sentence losses, backward, Adam step)
of ``course_lib.bert.BERTModel`` on batches of the course corpus
(``BERTPretrainingDataset.from_corpus``, trimmed to each batch's longest pair), with
``impl="sdpa"`` (PyTorch's fused kernel) and ``impl="manual"`` (the teaching path, which
keeps every head's attention weights). Both models start from the same weights and see
the same batches. Throughput is the real (non-padding) tokens of a batch divided by the
median step time. Timings are round-robin medians (see benchmarks/attention.py); they
are printed, never asserted. Results go to stdout and to _build/benchmarks/bert.csv.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from course_lib.benchmark import benchmark_parser, benchmark_setup  # noqa: E402
from attention import round_robin, save_table  # noqa: E402
from course_lib.bert import BERTModel, BERTPretrainingDataset, pretraining_loss  # noqa: E402
from course_lib.corpus import load_corpus  # noqa: E402

CONFIGS = [  # B, D, H, layers, F
    (64, 128, 2, 2, 256),
    (128, 256, 4, 4, 1024),
]
QUICK = CONFIGS[:1]


def bench(dataset, B, D, H, layers, ffn, device, rounds, dropout):
    torch.manual_seed(0)
    models = {"sdpa": BERTModel(len(dataset.vocab), D, ffn, H, layers, dropout, dataset.max_len, impl="sdpa")}
    models["manual"] = copy.deepcopy(models["sdpa"])
    models["manual"].impl = "manual"
    optimizers = {}
    for name, model in models.items():
        model.to(device).train()
        optimizers[name] = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = tuple(t.to(device) for t in dataset.batch(torch.arange(B)))
    tokens = int(batch[2].sum())

    def step(name):
        optimizers[name].zero_grad(set_to_none=True)
        pretraining_loss(models[name], *batch)[2].backward()
        optimizers[name].step()

    seconds = round_robin({name: (lambda n=name: step(n)) for name in models}, device, rounds)
    return tokens, batch[0].shape[1], seconds


def main() -> None:
    args = benchmark_parser(__doc__).parse_args()
    device, rounds, where = benchmark_setup(args)
    dataset = BERTPretrainingDataset.from_corpus(load_corpus(), "train")
    print(f"device: {where}; torch {torch.__version__}; median of {rounds} rounds\n")
    print(f"BERT pretraining step (forward + MLM and NSP losses + backward + Adam), course corpus, "
          f"vocabulary {len(dataset.vocab)}, dropout {args.dropout}\n")
    header = ["B", "T", "tokens", "D", "H", "layers", "F", "sdpa_ms", "manual_ms", "sdpa_tok/s", "manual_tok/s",
              "manual/sdpa"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    rows = []
    for B, D, H, layers, ffn in QUICK if args.quick else CONFIGS:
        tokens, T, s = bench(dataset, B, D, H, layers, ffn, device, rounds, args.dropout)
        row = [B, T, tokens, D, H, layers, ffn, f"{s['sdpa'] * 1e3:.1f}", f"{s['manual'] * 1e3:.1f}",
               f"{tokens / s['sdpa']:,.0f}", f"{tokens / s['manual']:,.0f}", f"{s['manual'] / s['sdpa']:.2f}"]
        rows.append(row)
        print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print(f"\ntable saved to {save_table('bert', [header, *rows])}")


if __name__ == "__main__":
    main()
