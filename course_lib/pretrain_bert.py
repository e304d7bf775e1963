"""Pretrain a small BERT as chapter 6 does, on one or several processes (DistributedDataParallel).

One process (CPU or one GPU)::

    python -m course_lib.pretrain_bert --steps 500 --losses losses.json --save bert.pt

N processes, one per GPU of a machine (NCCL; on a CPU-only machine the gloo backend)::

    torchrun --standalone --nproc_per_node=N -m course_lib.pretrain_bert --steps 500 --batch-size 512

**What it does: chapter 6's training.** The defaults are the chapter's run (2 blocks,
D = 64, 4 heads, an FFN of 128, no dropout, Adam at 2e-3 warmed up linearly over 100
steps, batches of 64 pairs, 4000 steps, pairs of at most 40 tokens), and the training
follows the chapter's loop:

* **dynamic masking** (RoBERTa's): the next-sentence pairs and the masking are drawn
  anew for every pass over the data, so a pair gets a new mask every time it is drawn;
  as in the chapter's loop, ``BERTPretrainingDataset`` is rebuilt with the seed
  ``1000 * seed + pass`` and the batches of a pass are shuffled with the seed
  ``seed + pass``;
* **warm-up**: the learning rate grows linearly over ``--warmup`` steps, then stays
  (``course_lib.training.linear_warmup``; ``--warmup 0``: none);
* **the loss**: the masked-LM mean over the real prediction positions plus the
  next-sentence mean (``course_lib.bert.pretraining_loss``).

With ``--data corpus`` and the defaults, one process computes the chapter's losses, up to
rounding.

**Where it differs from the chapter on purpose.**

* Pairs longer than ``--max-len`` are *trimmed* to fit (the longer sentence loses its
  last tokens, ``course_lib.bert.trim_pair``, as the original BERT does), never left
  out: leaving them out would bias real text such as WikiText-2 towards short
  sentences. The chapter leaves them out, but on the course corpus no pair is longer
  than its 40 tokens, so the data are the same.
* No held-out evaluation during training (the chapter measures the validation pairs
  every 100 steps); load the saved model and evaluate it.
* ``--max-len`` defaults to 64 for ``--data wikitext2`` (its sentences are longer).
* Several processes (the chapter uses one): ``--batch-size`` is the *global* batch: every step, each of the N
  processes takes its own 1/N of the same global batch (all processes build the same
  data from the same seeds), and the loss each process backpropagates is its share of
  the global mean, so that the gradients DistributedDataParallel averages are exactly
  those of the global batch on one process: with ``--dropout 0`` the losses match a
  single-process run up to rounding (with dropout each process draws its own masks).
  The masked-LM mean is over the global batch's real prediction positions, whose count
  every process knows.

**Data**: ``--data corpus`` (default), the training documents of the course corpus
(``course_lib.corpus.load_corpus(--num-sentences, --seed)``) and its English vocabulary;
``--data wikitext2``, WikiText-2 through ``course_lib.datasets`` (downloaded once,
verified by SHA-1), with a vocabulary of the tokens seen at least 5 times.

**Outputs** (rank 0): the losses and the throughput as JSON (``--losses``), and a complete
checkpoint (``--save``): the weights, the model's configuration and the vocabulary, which
``course_lib.bert.load_pretrained(path)`` turns back into ``(model, vocab)``. Both are
written atomically (a temporary file, renamed when complete), and both paths are checked
(missing folders created) before any data is built or any step is taken, so a bad path
fails in the first second, not after the training. An existing file at either path is
refused then too, unless ``--overwrite`` is given: an earlier run's checkpoint is never
replaced by accident. Should an output still fail to be written after the training (a
folder removed, a full disk), it is written to a new file in the current folder instead
and the command exits with an error that says where. Every other option is checked
before any data is built too, with a message that names it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from course_lib._checks import atomic_write, check_int, check_number, check_output_path, check_probability
from course_lib.datasets import DownloadError
from course_lib.bert import BERTModel, BERTPretrainingDataset, masked_lm_loss, save_pretrained
from course_lib.training import linear_warmup

#: Chapter 6's pretraining run: the defaults of the command line.
CHAPTER_6 = dict(steps=4000, batch_size=64, lr=2e-3, warmup=100, num_hiddens=64, ffn_num_hiddens=128, num_heads=4,
                 num_blks=2, dropout=0.0, max_len=40)
MAX_LEN_WIKITEXT2 = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    c = CHAPTER_6
    p = argparse.ArgumentParser(prog="python -m course_lib.pretrain_bert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("corpus", "wikitext2"), default="corpus")
    p.add_argument("--num-sentences", type=int, default=8000, help="size of the course corpus (--data corpus)")
    p.add_argument("--max-len", type=int, default=None,
                   help=f"longest input in tokens; longer pairs are trimmed to fit, not left out (default "
                        f"{c['max_len']} for the corpus, as chapter 6; {MAX_LEN_WIKITEXT2} for WikiText-2)")
    p.add_argument("--steps", type=int, default=c["steps"], help="optimizer steps (default: chapter 6's)")
    p.add_argument("--batch-size", type=int, default=c["batch_size"],
                   help="global batch size, a multiple of the process count")
    p.add_argument("--lr", type=float, default=c["lr"], help="peak learning rate")
    p.add_argument("--warmup", type=int, default=c["warmup"],
                   help="steps of linear learning-rate warm-up, as chapter 6 (0: none)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--num-hiddens", type=int, default=c["num_hiddens"])
    p.add_argument("--ffn-num-hiddens", type=int, default=c["ffn_num_hiddens"])
    p.add_argument("--num-heads", type=int, default=c["num_heads"])
    p.add_argument("--num-blks", type=int, default=c["num_blks"])
    p.add_argument("--dropout", type=float, default=c["dropout"])
    p.add_argument("--impl", choices=("sdpa", "manual"), default="sdpa", help="attention path (fused or teaching)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--log-every", type=int, default=100, help="print the losses every N steps (rank 0)")
    p.add_argument("--losses", type=Path, default=None, help="JSON file for the losses and the throughput (rank 0)")
    p.add_argument("--save", type=Path, default=None,
                   help="checkpoint file: weights, configuration and vocabulary (rank 0); read it back with "
                        "course_lib.bert.load_pretrained")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --save and --losses files (by default an existing file is refused "
                        "before training)")
    args = p.parse_args(argv)
    if args.max_len is None:
        args.max_len = MAX_LEN_WIKITEXT2 if args.data == "wikitext2" else c["max_len"]
    return args


def check_args(args: argparse.Namespace, world: int) -> None:
    """Every option, before any data is built: a SystemExit whose message names the bad one."""
    try:
        for name, minimum in (("steps", 1), ("batch_size", 1), ("log_every", 1), ("warmup", 0), ("num_hiddens", 1),
                              ("ffn_num_hiddens", 1), ("num_heads", 1), ("num_blks", 1), ("max_len", 5),
                              ("num_sentences", 1), ("seed", 0)):
            check_int("--" + name.replace("_", "-"), getattr(args, name), minimum)
        check_number("--lr", args.lr, positive=True)
        check_probability("--dropout", args.dropout)
        with torch.device("meta"):  # the sizes fit together (heads divide the model size, ...), without memory
            BERTModel(8, args.num_hiddens, args.ffn_num_hiddens, args.num_heads, args.num_blks, args.dropout,
                      args.max_len)
        outputs = [(name, path) for name, path in (("--losses", args.losses), ("--save", args.save)) if path]
        for name, path in outputs:
            check_output_path(path, name, overwrite=args.overwrite)
        if len(outputs) == 2 and Path(args.losses).resolve() == Path(args.save).resolve():
            raise ValueError(f"--losses and --save must be two different files, got {str(args.save)!r} twice")
    except ValueError as err:
        raise SystemExit(f"pretrain_bert: {err}") from None
    if args.batch_size % world:
        raise SystemExit(f"pretrain_bert: --batch-size {args.batch_size} must be a multiple of the {world} processes")


def choose_device(name: str | None, local_rank: int) -> torch.device:
    """The device of this process: --device, else cuda when available; a clear error when it does not exist."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"pretrain_bert: --device must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"pretrain_bert: --device must be cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"pretrain_bert: --device {name}: CUDA is not available here (torch {torch.__version__}, "
                             f"{torch.cuda.device_count()} GPU(s) visible); use --device cpu")
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        if device.index >= torch.cuda.device_count():
            raise SystemExit(f"pretrain_bert: GPU {device.index} does not exist ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(device)
    return device


def load_documents(args: argparse.Namespace):
    """``(documents, vocab)``: the training documents (lists of sentences, each a list of tokens) and the vocabulary."""
    if args.data == "corpus":
        from course_lib.corpus import load_corpus

        corpus = load_corpus(args.num_sentences, args.seed)
        return [[s.en for s in doc] for doc in corpus.documents("train")], corpus.src_vocab
    from course_lib import datasets
    from course_lib.bert import wikitext2_documents, wikitext2_vocab

    documents = wikitext2_documents(datasets.load_wikitext2("train"))
    return documents, wikitext2_vocab(documents)


def epoch_data(documents, vocab, args: argparse.Namespace, epoch: int) -> BERTPretrainingDataset:
    """Pass ``epoch``'s examples: new pairs and a new masking (dynamic masking), long pairs trimmed."""
    return BERTPretrainingDataset(documents, vocab, args.max_len, seed=1000 * args.seed + epoch, trim_pairs=True)


def global_batches(documents, vocab, args: argparse.Namespace):
    """``(data, indices)`` of every global batch, pass after pass, the same on every process.

    Each pass builds its own data (:func:`epoch_data`) and visits it in the order of the
    chapter's ``data.loader(batch_size, seed=seed + pass, drop_last=True)``: whole
    batches only.
    """
    epoch = 0
    while True:
        data = epoch_data(documents, vocab, args, epoch)
        if len(data) < args.batch_size:
            raise SystemExit(f"pretrain_bert: {len(data)} examples are fewer than one batch of {args.batch_size}")
        order = DataLoader(range(len(data)), batch_size=args.batch_size, shuffle=True, drop_last=True,
                           generator=torch.Generator().manual_seed(args.seed + epoch))
        for indices in order:
            yield data, indices
        epoch += 1


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    check_args(args, world)  # before the process group, the data and the first step
    device = choose_device(args.device, local_rank)
    distributed = world > 1
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(args, world, rank, device, distributed)
    finally:
        if distributed:
            dist.destroy_process_group()


def _train(args, world: int, rank: int, device: torch.device, distributed: bool) -> dict:
    t_data = time.perf_counter()
    try:
        documents, vocab = load_documents(args)
        batches = global_batches(documents, vocab, args)
        first = next(batches)  # builds the first pass's data (and checks that it holds a batch)
    except (ValueError, DownloadError) as err:  # a corpus too small to split, WikiText-2 offline, ...
        raise SystemExit(f"pretrain_bert: {err}") from None
    t_data = time.perf_counter() - t_data
    torch.manual_seed(args.seed)  # the same initial weights on every process (DDP also broadcasts rank 0's)
    model = BERTModel(len(vocab), args.num_hiddens, args.ffn_num_hiddens, args.num_heads, args.num_blks,
                      args.dropout, args.max_len, impl=args.impl).to(device)
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(args.warmup)) if args.warmup else None
    share = args.batch_size // world
    history, tokens_seen = [], 0
    net.train()
    t0 = time.perf_counter()

    def all_batches():
        yield first
        yield from batches

    for step, (data, indices) in zip(range(1, args.steps + 1), all_batches()):
        # Global normalizers, known to every process: real predictions and examples of the whole batch.
        num_preds = float(data.mlm_weights[indices].sum())
        mine = indices[rank * share : (rank + 1) * share]
        X, segments, valid_lens, positions, weights, labels, nsp_labels = (t.to(device) for t in data.batch(mine))
        _, mlm_Y_hat, nsp_Y_hat = net(X, segments, valid_lens, positions)
        mlm_part = masked_lm_loss(mlm_Y_hat, labels, weights, reduction="sum") / num_preds
        nsp_part = F.cross_entropy(nsp_Y_hat, nsp_labels, reduction="sum") / args.batch_size
        lr = optimizer.param_groups[0]["lr"]  # this step's learning rate
        optimizer.zero_grad(set_to_none=True)
        ((mlm_part + nsp_part) * world).backward()  # DDP averages over the processes: the global batch's gradient
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        parts = torch.stack([mlm_part.detach(), nsp_part.detach(), valid_lens.sum().to(mlm_part.dtype)])
        if distributed:
            dist.all_reduce(parts)  # sums: the global batch's mean losses and its token count
        mlm_l, nsp_l, n_tokens = parts.tolist()
        tokens_seen += int(n_tokens)
        history.append({"step": step, "mlm": mlm_l, "nsp": nsp_l, "lr": lr})
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step}: mlm {mlm_l:.4f}, nsp {nsp_l:.4f}", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    result = {"world_size": world, "device": str(device), "backend": dist.get_backend() if distributed else None,
              "batch_size": args.batch_size, "examples": len(first[0]), "data_seconds": t_data,
              "train_seconds": seconds, "tokens_per_s": tokens_seen / seconds if seconds else None,
              "losses": history}
    if rank == 0:
        print(f"{world} process(es) on {device}: {result['tokens_per_s'] or 0:,.0f} tokens/s", flush=True)
        write_outputs(args, model, vocab, result, world)
    return result


def write_outputs(args: argparse.Namespace, model: BERTModel, vocab, result: dict, world: int) -> None:
    """Write the checkpoint, then the losses; a trained model is never lost to a failed write.

    The paths were checked before training, but a folder can disappear, a disk can fill
    up or a file can appear in the meantime (it is not replaced without ``--overwrite``).
    An output that cannot be written where asked is written to a new file in the current
    folder (or, failing that, in the temporary folder), and the command then exits with
    an error that says where each output went.
    """
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    text = json.dumps(result, indent=1)
    writers = []
    if args.save:
        writers.append(("--save", Path(args.save), lambda path, overwrite: save_pretrained(
            model, vocab, path, extra={"options": options, "world_size": world}, overwrite=overwrite)))
    if args.losses:
        writers.append(("--losses", Path(args.losses),
                        lambda path, overwrite: atomic_write(path, lambda tmp: tmp.write_text(text), overwrite)))
    problems = []
    for name, path, write in writers:
        try:
            write(path, args.overwrite)
            continue
        except OSError as err:
            problem = f"{name}={str(path)!r} could not be written ({err})"
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            rescue = None
            try:
                fd, rescue = tempfile.mkstemp(dir=folder, prefix=f"pretrain_bert-{path.stem}-", suffix=path.suffix)
                os.close(fd)
                write(Path(rescue), True)  # a new, empty file of our own: replacing it loses nothing
                problems.append(f"{problem}; it was written to {rescue} instead")
                break
            except OSError as err:
                if rescue is not None and os.path.exists(rescue):
                    os.unlink(rescue)  # still our empty file: the write is atomic
                problem += f"; not to {folder} either ({err})"
        else:
            problems.append(f"{problem}; it is lost")
    if problems:
        raise SystemExit("pretrain_bert: the training finished, but " + "; ".join(problems))


if __name__ == "__main__":
    main()
