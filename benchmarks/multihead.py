"""Benchmark: multi-head self-attention and local-window attention (chapter 4).

    python3 tasks.py bench            # runs this after benchmarks/attention.py
    .venv/bin/python benchmarks/multihead.py [--quick]

Part 1, multi-head self-attention, forward + backward, with the same weights in all:

* ``course_lib.MultiHeadAttention`` teaching path (``impl="manual"``: heads in the batch
  axis, written-out matrix products) and fast path (``impl="sdpa"``);
* ``torch.nn.MultiheadAttention`` (batch first), PyTorch's own module, as the reference;
* d2l 1.0.3's ``MultiHeadAttention``.

Each is timed without a mask and with a padding mask from per-sequence valid lengths
(``key_padding_mask`` for PyTorch's module). Ratios are relative to PyTorch's module.

Part 2, forward time of one head of self-attention over growing T: full attention
(fused kernel), full attention with a local-window mask (same O(T^2) work), and
``course_lib.local_attention`` (O(T * window) work).

Timings are round-robin medians (see benchmarks/attention.py); they are not tests.
Results go to stdout and to _build/benchmarks/multihead.csv.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import course_lib  # noqa: E402
from attention import make_inputs, round_robin, save_table  # noqa: E402
from d2l_oracle import load_d2l  # noqa: E402

CONFIGS = [(8, 128, 256, 8), (32, 64, 128, 4), (4, 512, 256, 8), (2, 1024, 512, 8)]  # B, T, D, H
QUICK = [(8, 128, 256, 8), (4, 512, 256, 8)]
LOCAL_LENGTHS = [256, 512, 1024, 2048, 4096, 8192]


def modules(d2l, D, H, device, q):
    manual = course_lib.MultiHeadAttention(D, H, 0.0, query_size=D, key_size=D, value_size=D).to(device).eval()
    fused = course_lib.MultiHeadAttention(D, H, 0.0, impl="sdpa", query_size=D, key_size=D, value_size=D).to(device).eval()
    fused.load_state_dict(manual.state_dict())
    theirs = d2l.MultiHeadAttention(D, H, 0.0).to(device).eval()
    theirs(q, q, q, None)  # materialize the lazy layers
    theirs.load_state_dict(manual.state_dict())
    reference = nn.MultiheadAttention(D, H, bias=False, batch_first=True).to(device).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([manual.W_q.weight, manual.W_k.weight, manual.W_v.weight]))
        reference.out_proj.weight.copy_(manual.W_o.weight)

    def torch_mha(x, vl):
        padding = None if vl is None else torch.arange(x.shape[1], device=x.device).view(1, -1) >= vl.view(-1, 1)
        return reference(x, x, x, key_padding_mask=padding, need_weights=False)[0]

    return {
        "torch_mha": torch_mha,
        "ours_sdpa": lambda x, vl: fused(x, x, x, vl),
        "ours_manual": lambda x, vl: manual(x, x, x, vl),
        "d2l_mha": lambda x, vl: theirs(x, x, x, None if vl is None else vl.clone()),
    }


def bench_mha(d2l, B, T, D, H, masked, device, rounds):
    x, _, _, vl = make_inputs(B, T, D, device)
    vl = vl if masked else None
    fns = modules(d2l, D, H, device, x)
    grad = torch.randn(B, T, D, device=device)
    outs = {name: fn(x, vl) for name, fn in fns.items()}
    for name, out in outs.items():  # the same weights must give the same result
        torch.testing.assert_close(out, outs["torch_mha"], atol=1e-4, rtol=1e-4, msg=f"{name} differs")
    def fwd_bwd(fn):
        x.grad = None
        fn(x, vl).backward(grad)

    seconds = round_robin({name: (lambda fn=fn: fwd_bwd(fn)) for name, fn in fns.items()}, device, rounds)
    return {name: s * 1e3 for name, s in seconds.items()}


def bench_local(T, window, device, rounds, D=64):
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(1, T, D, generator=g).to(device) for _ in range(3))
    mask = course_lib.local_window_mask(T, T, window, device=device)
    fns = {
        "full": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
        "full+window mask": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "local_attention": lambda: course_lib.local_attention(q, k, v, window),
    }
    with torch.no_grad():
        seconds = round_robin(fns, device, rounds)
    return {name: s * 1e3 for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: course_lib.try_gpu())")
    parser.add_argument("--window", type=int, default=32, help="half-width of the local window")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else course_lib.try_gpu()
    rounds = args.rounds or (5 if args.quick else 15)
    d2l = load_d2l()
    torch.manual_seed(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {where}; torch {torch.__version__}; median of {rounds} rounds, milliseconds\n")
    print("Multi-head self-attention, forward + backward\n")
    header = ["B", "T", "D", "H", "mask", "torch_mha", "ours_sdpa", "ours_manual", "d2l_mha",
              "sdpa/torch", "manual/torch", "d2l/torch"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    rows = []
    for B, T, D, H in QUICK if args.quick else CONFIGS:
        for masked in (False, True):
            ms = bench_mha(d2l, B, T, D, H, masked, device, rounds)
            ref = ms["torch_mha"]
            row = [B, T, D, H, "padding" if masked else "none"] + [f"{ms[k]:.2f}" for k in header[5:9]]
            row += [f"{ms[k] / ref:.2f}" for k in ("ours_sdpa", "ours_manual", "d2l_mha")]
            rows.append(row)
            print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    print(f"\nOne head of self-attention (D = 64), forward only, window = {args.window} on each side\n")
    local_header = ["T", "full", "full+window mask", "local_attention"]
    print("| " + " | ".join(local_header) + " |\n|" + "---|" * len(local_header))
    local_rows = []
    for T in LOCAL_LENGTHS[:4] if args.quick else LOCAL_LENGTHS:
        ms = bench_local(T, args.window, device, rounds)
        local_rows.append([T] + [f"{ms[k]:.3f}" for k in local_header[1:]])
        print("| " + " | ".join(str(x) for x in local_rows[-1]) + " |", flush=True)
    saved = save_table("multihead", [header, *rows], [local_header, *local_rows])
    ratios = [float(r[9]) for r in rows]
    print(f"\nours_sdpa / torch_mha: median {statistics.median(ratios):.2f}, max {max(ratios):.2f} over {len(rows)} "
          f"cases; tables saved to {saved}")


if __name__ == "__main__":
    main()
