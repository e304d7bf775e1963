"""Pretrain a small BERT on one or several processes (chapter 6), with DistributedDataParallel.

One process (CPU or one GPU)::

    python -m course_lib.pretrain_bert --steps 500 --losses losses.json

N processes, one per GPU of a machine (NCCL; on a CPU-only machine the gloo backend)::

    torchrun --standalone --nproc_per_node=N -m course_lib.pretrain_bert --steps 500 --batch-size 512

``--batch-size`` is the *global* batch: every step, each of the N processes takes its
own 1/N of the same global batch (drawn from a seeded order that all processes share),
and the loss each process backpropagates is its share of the global mean, so that the
gradients DistributedDataParallel averages are exactly those of the global batch on one
process: with ``--dropout 0`` the losses match a single-process run up to rounding
(with dropout they differ, as each process draws its own dropout masks). The masked
language model loss is a mean over the global batch's real prediction positions
(``course_lib.bert.masked_lm_loss``), so each process divides its sum by that global
count, which every process knows because every process builds the same data set.

Data: ``--data corpus`` (default), the course corpus's training documents
(``course_lib.corpus.load_corpus``); ``--data wikitext2``, WikiText-2 through
``course_lib.datasets`` (downloaded once, verified by SHA-1). Rank 0 prints the losses
and writes them, with the throughput, to the JSON file ``--losses``; ``--save`` writes the
model's state dict (our ``BERTModel``'s, loadable without DDP).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from course_lib.bert import BERTModel, BERTPretrainingDataset, masked_lm_loss, wikitext2_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m course_lib.pretrain_bert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("corpus", "wikitext2"), default="corpus")
    p.add_argument("--num-sentences", type=int, default=8000, help="size of the course corpus (--data corpus)")
    p.add_argument("--max-len", type=int, default=64, help="longest pair, in tokens (longer pairs are left out)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size, a multiple of the process count")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--num-hiddens", type=int, default=128)
    p.add_argument("--ffn-num-hiddens", type=int, default=256)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--num-blks", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--impl", choices=("sdpa", "manual"), default="sdpa", help="attention path (fused or teaching)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--losses", type=Path, default=None, help="JSON file for the losses (rank 0)")
    p.add_argument("--save", type=Path, default=None, help="file for the trained state dict (rank 0)")
    return p.parse_args(argv)


def build_dataset(args: argparse.Namespace) -> BERTPretrainingDataset:
    if args.data == "corpus":
        from course_lib.corpus import load_corpus

        return BERTPretrainingDataset.from_corpus(load_corpus(args.num_sentences, args.seed), "train", args.max_len,
                                                  args.seed)
    return wikitext2_dataset("train", args.max_len, args.seed)


def global_batches(n: int, batch_size: int, seed: int):
    """Index tensors of the global batches, epoch after epoch: the same on every process."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g)
        for start in range(0, n - batch_size + 1, batch_size):  # whole batches only
            yield order[start : start + batch_size]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    distributed = world > 1
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {world} processes")
    try:
        return _train(args, world, rank, device, distributed)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(args, world: int, rank: int, device: torch.device, distributed: bool) -> dict:
    t_data = time.perf_counter()
    dataset = build_dataset(args)
    t_data = time.perf_counter() - t_data
    if len(dataset) < args.batch_size:
        raise SystemExit(f"{len(dataset)} examples are fewer than one batch of {args.batch_size}")
    torch.manual_seed(args.seed)  # the same initial weights on every process (DDP also broadcasts rank 0's)
    model = BERTModel(len(dataset.vocab), args.num_hiddens, args.ffn_num_hiddens, args.num_heads, args.num_blks,
                      args.dropout, args.max_len, impl=args.impl).to(device)
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=args.lr)
    share = args.batch_size // world
    history, tokens_seen = [], 0
    net.train()
    t0 = time.perf_counter()
    for step, indices in zip(range(1, args.steps + 1), global_batches(len(dataset), args.batch_size, args.seed)):
        # Global normalizers, known to every process: real predictions and examples of the whole batch.
        num_preds = float(dataset.mlm_weights[indices].sum())
        mine = indices[rank * share : (rank + 1) * share]
        X, segments, valid_lens, positions, weights, labels, nsp_labels = (t.to(device) for t in dataset.batch(mine))
        _, mlm_Y_hat, nsp_Y_hat = net(X, segments, valid_lens, positions)
        mlm_part = masked_lm_loss(mlm_Y_hat, labels, weights, reduction="sum") / num_preds
        nsp_part = F.cross_entropy(nsp_Y_hat, nsp_labels, reduction="sum") / args.batch_size
        optimizer.zero_grad(set_to_none=True)
        ((mlm_part + nsp_part) * world).backward()  # DDP averages over the processes: the global batch's gradient
        optimizer.step()
        parts = torch.stack([mlm_part.detach(), nsp_part.detach(), valid_lens.sum().to(mlm_part.dtype)])
        if distributed:
            dist.all_reduce(parts)  # sums: the global batch's mean losses and its token count
        mlm_l, nsp_l, n_tokens = parts.tolist()
        tokens_seen += int(n_tokens)
        history.append({"step": step, "mlm": mlm_l, "nsp": nsp_l})
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step}: mlm {mlm_l:.4f}, nsp {nsp_l:.4f}", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    result = {"world_size": world, "device": str(device), "backend": dist.get_backend() if distributed else None,
              "batch_size": args.batch_size, "examples": len(dataset), "data_seconds": t_data,
              "train_seconds": seconds, "tokens_per_s": tokens_seen / seconds if seconds else None,
              "losses": history}
    if rank == 0:
        print(f"{world} process(es) on {device}: {tokens_seen / seconds:,.0f} tokens/s", flush=True)
        if args.losses:
            args.losses.parent.mkdir(parents=True, exist_ok=True)
            args.losses.write_text(json.dumps(result, indent=1))
        if args.save:
            torch.save(model.state_dict(), args.save)
    return result


if __name__ == "__main__":
    main()
