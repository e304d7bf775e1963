"""Benchmark: forward + backward time of dot-product and additive attention.

    python3 tasks.py bench            # or: .venv/bin/python benchmarks/attention.py [--quick]

Compares, for several batch sizes B, sequence lengths T (Tq = Tk = T) and sizes D:

* ``course_lib`` DotProductAttention, teaching path (impl="manual") and fast path
  (impl="sdpa");
* PyTorch's ``torch.nn.functional.scaled_dot_product_attention`` called directly (with
  a padding mask built from the valid lengths in the timed code, as a caller must);
* d2l 1.0.3's DotProductAttention;
* and AdditiveAttention, ours against d2l's.

Each configuration is timed without a mask and with a padding mask from per-sequence
valid lengths. Implementations are timed round-robin (one run of each in turn, the
order rotated every round, many rounds) and the median is reported, so that a noisy
machine affects all alike. Ratios
are relative to PyTorch's fused call. Results go to stdout (a Markdown table) and to
_build/benchmarks/attention.csv. Timings are not pass/fail tests.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import course_lib  # noqa: E402
from d2l_oracle import load_d2l  # noqa: E402

CONFIGS = [  # B, T, D
    (1, 128, 64),
    (8, 128, 64),
    (32, 64, 32),
    (8, 512, 64),
    (32, 256, 32),
    (4, 1024, 64),
]
QUICK = [(8, 128, 64), (4, 512, 64)]


def make_inputs(B, T, D, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, T, D, generator=g).to(device).requires_grad_(True) for _ in range(3))
    valid_lens = torch.randint(T // 2, T + 1, (B,), generator=g).to(device)
    return q, k, v, valid_lens


def torch_reference(q, k, v, valid_lens):
    mask = None
    if valid_lens is not None:  # (B, 1, Tk), broadcast over the queries
        mask = torch.arange(k.shape[1], device=k.device).view(1, 1, -1) < valid_lens.view(-1, 1, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def candidates(d2l, D):
    ours_manual = course_lib.DotProductAttention(0.0, impl="manual").eval()
    ours_sdpa = course_lib.DotProductAttention(0.0, impl="sdpa").eval()
    theirs = d2l.DotProductAttention(0.0).eval()
    add_ours = course_lib.AdditiveAttention(D, 0.0, query_size=D, key_size=D).eval()
    add_theirs = d2l.AdditiveAttention(D, 0.0).eval()
    return {
        "torch_sdpa": lambda q, k, v, vl: torch_reference(q, k, v, vl),
        "ours_sdpa": lambda q, k, v, vl: ours_sdpa(q, k, v, vl),
        "ours_manual": lambda q, k, v, vl: ours_manual(q, k, v, vl),
        "d2l_dot": lambda q, k, v, vl: theirs(q, k, v, None if vl is None else vl.clone()),
        "ours_additive": lambda q, k, v, vl: add_ours(q, k, v, vl),
        "d2l_additive": lambda q, k, v, vl: add_theirs(q, k, v, None if vl is None else vl.clone()),
    }, (add_ours, add_theirs)


def fwd_bwd(fn, q, k, v, vl, grad):
    for t in (q, k, v):
        t.grad = None
    fn(q, k, v, vl).backward(grad)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def save_table(name, *blocks):
    """Write the benchmark's tables (lists of rows, header first) to _build/benchmarks/<name>.csv,
    separated by an empty row; return the path."""
    out = ROOT / "_build" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.csv"
    lines = []
    for k, block in enumerate(blocks):
        lines += ([[]] if k else []) + list(block)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    return path


def round_robin(calls, device, rounds, warmup=True):
    """Median seconds of each zero-argument call in ``calls`` (name -> callable).

    One run of each per round, the order rotated every round so that no call always
    runs first or last on a noisy machine.
    """
    if warmup:
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            start = time.perf_counter()
            calls[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_config(d2l, B, T, D, masked, device, rounds):
    q, k, v, vl = make_inputs(B, T, D, device)
    vl = vl if masked else None
    fns, (add_ours, add_theirs) = candidates(d2l, D)
    add_ours.to(device)
    add_theirs.to(device)
    add_theirs(q, k, v, vl)  # materialize d2l's lazy layers, then share weights
    add_ours.load_state_dict(add_theirs.state_dict())
    grad = torch.randn(B, T, D, device=device)
    if T > 256:  # additive attention builds a (B, T, T, D) tensor: skip it where that is huge
        fns.pop("ours_additive")
        fns.pop("d2l_additive")
    calls = {name: (lambda fn=fn: fwd_bwd(fn, q, k, v, vl, grad)) for name, fn in fns.items()}
    return round_robin(calls, device, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two configurations, fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per configuration")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: course_lib.try_gpu())")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else course_lib.try_gpu()
    rounds = args.rounds or (6 if args.quick else 24)
    d2l = load_d2l()
    torch.manual_seed(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {where}; torch {torch.__version__}; forward+backward, median of {rounds} rounds, milliseconds\n")
    header = ["B", "T", "D", "mask", "torch_sdpa", "ours_sdpa", "ours_manual", "d2l_dot", "ours_additive", "d2l_additive",
              "sdpa/torch", "manual/torch", "d2l/torch", "additive ours/d2l"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for B, T, D in QUICK if args.quick else CONFIGS:
        for masked in (False, True):
            t = bench_config(d2l, B, T, D, masked, device, rounds)
            ms = {k: v * 1e3 for k, v in t.items()}
            ref = ms["torch_sdpa"]
            row = [B, T, D, "padding" if masked else "none"]
            row += [f"{ms[k]:.3f}" if k in ms else "-" for k in header[4:10]]
            row += [f"{ms['ours_sdpa'] / ref:.2f}", f"{ms['ours_manual'] / ref:.2f}", f"{ms['d2l_dot'] / ref:.2f}"]
            row += [f"{ms['ours_additive'] / ms['d2l_additive']:.2f}" if "ours_additive" in ms else "-"]
            rows.append(row)
            print("| " + " | ".join(str(x) for x in row) + " |", flush=True)
    saved = save_table("attention", [header, *rows])
    ratios = [float(r[10]) for r in rows]
    print(f"\nours_sdpa / torch_sdpa: median {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
          f"over {len(rows)} cases; table saved to {saved}")


if __name__ == "__main__":
    main()
