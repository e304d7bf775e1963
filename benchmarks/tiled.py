"""Benchmark: tiled attention (the online softmax) against PyTorch's fused kernel and the teaching path.

    .venv/bin/python benchmarks/tiled.py [--quick] [--rounds N] [--device cpu|cuda] [--threads N]

For growing T (Tq = Tk = T), one forward pass of self-attention, without gradients,
with and without the causal mask, of three implementations on the same inputs:

* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``, PyTorch's fused kernel
  (on the CPU and on recent GPUs itself a tiled, FlashAttention-style kernel);
* ``manual``: ``course_lib.dot_product_attention(impl="manual")``, the teaching path, which
  builds the whole (T, T) matrix of scores and weights (heads moved into the batch axis);
* ``tiled b=64`` and ``tiled b=256``: ``course_lib.efficient_attention.tiled_attention``,
  the online softmax written in plain PyTorch, one (b, b) block of scores at a time.

The output of every implementation is checked against ``sdpa`` before timing. Times are
round-robin medians (see benchmarks/attention.py), in milliseconds; peak memory is
``course_lib.benchmark.peak_memory`` (the profiler's record of PyTorch's allocations on
the CPU, ``torch.cuda.max_memory_allocated`` on a GPU), in MB, above the inputs. Expect
the tiled version to need far less memory than ``manual`` and to be slower than
``sdpa``: its blocks are separate PyTorch calls, each reading and writing memory, while
the real speed-up of tiling comes from a single kernel that keeps the blocks in a GPU's
on-chip memory. Timings are printed, never asserted. Results go to stdout and to
_build/benchmarks/tiled.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from attention import round_robin, save_table  # noqa: E402
from course_lib import dot_product_attention  # noqa: E402
from course_lib.benchmark import benchmark_parser, benchmark_setup, peak_memory  # noqa: E402
from course_lib.efficient_attention import tiled_attention  # noqa: E402

B, H, D = 1, 4, 64
LENGTHS = [256, 512, 1024, 2048, 4096]
QUICK = [256, 1024]
MB = 2 ** 20


def implementations(causal: bool):
    def manual(q, k, v):  # (B, H, T, D) -> heads in the batch axis (B * H, T, D), as chapter 4 does
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril() if causal else None
        out, _ = dot_product_attention(*(t.reshape(B * H, T, D) for t in (q, k, v)), attn_mask=mask)
        return out.reshape(B, H, T, D)

    return {
        "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        "manual": manual,
        "tiled b=64": lambda q, k, v: tiled_attention(q, k, v, block_size=64, causal=causal),
        "tiled b=256": lambda q, k, v: tiled_attention(q, k, v, block_size=256, causal=causal),
    }


def bench(T: int, causal: bool, device: torch.device, rounds: int):
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(B, H, T, D, generator=g).to(device) for _ in range(3))
    fns = implementations(causal)
    with torch.no_grad():
        reference = fns["sdpa"](q, k, v)
        for name, fn in fns.items():
            torch.testing.assert_close(fn(q, k, v), reference, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
        seconds = round_robin({name: (lambda fn=fn: fn(q, k, v)) for name, fn in fns.items()}, device, rounds)
        memory = {name: peak_memory(lambda fn=fn: fn(q, k, v), device) for name, fn in fns.items()}
    return seconds, memory


def main() -> None:
    args = benchmark_parser(__doc__).parse_args()
    device, rounds, where = benchmark_setup(args)
    names = list(implementations(False))
    print(f"device: {where}; torch {torch.__version__}; median of {rounds} rounds\n")
    print(f"Self-attention forward, no gradients, B = {B}, H = {H}, D = {D}; time in ms, peak memory in MB\n")
    header = ["T", "causal"] + [f"{n} ms" for n in names] + [f"{n} MB" for n in names] + ["scores MB", "tiled64/sdpa"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    rows = []
    for T in QUICK if args.quick else LENGTHS:
        for causal in (False, True):
            seconds, memory = bench(T, causal, device, rounds)
            row = [T, causal] + [f"{seconds[n] * 1e3:.2f}" for n in names] + [f"{memory[n] / MB:.2f}" for n in names]
            row += [f"{B * H * T * T * 4 / MB:.2f}", f"{seconds['tiled b=64'] / seconds['sdpa']:.1f}"]
            rows.append(row)
            print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print(f"\n'scores MB' is one float32 (B, H, T, T) score matrix. Table saved to {save_table('tiled', [header, *rows])}")


if __name__ == "__main__":
    main()
