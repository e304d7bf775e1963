"""python -m course_lib.pretrain_bert: chapter 6's training, its checks before training, and its outputs.

Oracle: the training loop of chapter 6 (its cells that build the model, draw new pairs and a
new masking for every pass, warm the learning rate up and take the steps), written out here
as the chapter writes it, on a smaller corpus. The command line must give the same losses.
The torchrun test (two processes against one) is in test_bert.py.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import course_lib
from course_lib import pretrain_bert
from course_lib.bert import BERTModel, BERTPretrainingDataset, load_pretrained, pretraining_loss
from course_lib.corpus import load_corpus
from course_lib.training import linear_warmup

SMALL = ["--num-sentences", "300", "--device", "cpu", "--log-every", "1000"]


def chapter_6_losses(num_sentences: int, steps: int, warmup: int, seed: int = 0) -> list[tuple[float, float, float]]:
    """(mlm, nsp, learning rate) of each step of chapter 6's loop (cells 19 and 20), on load_corpus(num_sentences)."""
    corpus = load_corpus(num_sentences)
    vocab = corpus.src_vocab
    MAX_LEN, BATCH_SIZE, LR = 40, 64, 2e-3
    course_lib.set_seed(seed)
    bert = BERTModel(len(vocab), 64, 128, 4, 2, dropout=0.0, max_len=MAX_LEN, impl="sdpa")

    def batches(steps):
        done, epoch = 0, 0
        while True:
            data = BERTPretrainingDataset.from_corpus(corpus, "train", max_len=MAX_LEN, seed=1000 * seed + epoch)
            for batch in data.loader(BATCH_SIZE, seed=seed + epoch, drop_last=True):
                if done == steps:
                    return
                yield batch
                done += 1
            epoch += 1

    optimizer = torch.optim.Adam(bert.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(warmup))
    out = []
    for batch in batches(steps):
        lr = optimizer.param_groups[0]["lr"]
        mlm_l, nsp_l, loss = pretraining_loss(bert, *batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        out.append((mlm_l.item(), nsp_l.item(), lr))
    return out


def test_the_command_line_trains_as_chapter_6(tmp_path):
    """Same model, same pairs and masks pass after pass (dynamic masking), same warm-up: the same losses."""
    steps, warmup = 7, 3
    result = pretrain_bert.main([*SMALL, "--steps", str(steps), "--warmup", str(warmup)])
    expected = chapter_6_losses(300, steps, warmup)
    passes = steps * 64 / result["examples"]
    assert passes > 2  # the run crosses passes, so the redrawn pairs and masks are compared too
    assert len(result["losses"]) == steps
    for got, (mlm, nsp, lr) in zip(result["losses"], expected):
        assert got["mlm"] == pytest.approx(mlm, rel=1e-5) and got["nsp"] == pytest.approx(nsp, rel=1e-5)
        assert got["lr"] == pytest.approx(lr, rel=1e-12)
    assert [r["lr"] / 2e-3 for r in result["losses"][:5]] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0, 1.0])


def test_the_defaults_are_chapter_6s_run():
    args = pretrain_bert.parse_args([])
    chapter = dict(steps=4000, batch_size=64, lr=2e-3, warmup=100, num_hiddens=64, ffn_num_hiddens=128, num_heads=4,
                   num_blks=2, dropout=0.0, max_len=40)
    assert {k: getattr(args, k) for k in chapter} == chapter and args.data == "corpus" and args.impl == "sdpa"
    assert pretrain_bert.parse_args(["--data", "wikitext2"]).max_len == 64


def test_every_pass_draws_new_pairs_and_new_masks():
    corpus = load_corpus(300)
    documents = [[s.en for s in doc] for doc in corpus.documents("train")]
    args = pretrain_bert.parse_args(SMALL)
    first, second = (pretrain_bert.epoch_data(documents, corpus.src_vocab, args, e) for e in (0, 1))
    assert len(first) == len(second)  # one pair per sentence that has a successor, every pass
    assert [p.a for p in first.pairs] == [p.a for p in second.pairs]
    same_b = sum(p.b == q.b for p, q in zip(first.pairs, second.pairs)) / len(first)
    same_mask = sum(torch.equal(first.pred_positions[i], second.pred_positions[i]) for i in range(len(first)))
    assert same_b < 0.8 and same_mask / len(first) < 0.5  # the random second sentences and the masks are redrawn


def test_long_pairs_are_trimmed_not_left_out(tmp_path, monkeypatch):
    """On text with long sentences (WikiText-2's layout), every pair is kept, trimmed to --max-len."""
    from course_lib import datasets

    words = "the a river bank money city game was is of in and to sold released".split()
    g = torch.Generator().manual_seed(0)
    lines = []
    for p in range(30):
        sentences = [" ".join(words[i] for i in torch.randint(len(words), (int(n),), generator=g).tolist())
                     for n in torch.randint(3, 25, (2 + p % 3,), generator=g)]
        lines.append(" . ".join(sentences) + " . ")
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "wiki.train.tokens").write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setattr(datasets, "load_wikitext2", lambda split="train", folder=None: datasets.read_wikitext2(tmp_path))
    paragraphs = datasets.read_wikitext2(tmp_path)
    longest = max(len(a.split()) + len(b.split()) + 3 for p in paragraphs for a, b in zip(p, p[1:]))
    assert longest > 20
    result = pretrain_bert.main(["--data", "wikitext2", "--steps", "2", "--batch-size", "8", "--max-len", "20",
                                 "--device", "cpu", "--warmup", "0"])
    assert result["examples"] == sum(len(p) - 1 for p in paragraphs)  # no pair left out
    args = pretrain_bert.parse_args(["--data", "wikitext2", "--max-len", "20"])
    documents, vocab = pretrain_bert.load_documents(args)
    data = pretrain_bert.epoch_data(documents, vocab, args, 0)
    assert int(data.valid_lens.max()) == 20


# ------------------------------------------------------------------------------ checks before training


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the data is built: every check must come first."""
    def refuse(args):
        raise AssertionError("the data was built: the check came too late")

    monkeypatch.setattr(pretrain_bert, "load_documents", refuse)


@pytest.mark.parametrize("options, message", [
    (["--steps", "0"], "--steps must be an int >= 1, got 0"),
    (["--steps", "-5"], "--steps must be an int >= 1, got -5"),
    (["--batch-size", "0"], "--batch-size must be an int >= 1, got 0"),
    (["--log-every", "0"], "--log-every must be an int >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be an int >= 0, got -1"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--dropout", "1.5"], r"--dropout must be a probability in \[0, 1\], got 1.5"),
    (["--max-len", "4"], "--max-len must be an int >= 5, got 4"),
    (["--num-heads", "3"], "num_heads must divide num_hiddens"),
    (["--num-hiddens", "0"], "--num-hiddens must be an int >= 1, got 0"),
    (["--seed", "-1"], "--seed must be an int >= 0, got -1"),
    (["--device", "gpu"], "--device must be cpu, cuda or cuda:N, got 'gpu'"),
    (["--device", "mps"], "--device must be cpu, cuda or cuda:N, got 'mps'"),
])
def test_bad_options_stop_before_any_data_with_a_message_that_names_them(no_training, options, message):
    argv = [*SMALL, *options] if "--device" not in options else ["--num-sentences", "300", *options]
    with pytest.raises(SystemExit, match=message):
        pretrain_bert.main(argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA")
def test_cuda_on_a_cpu_build_is_a_clear_error(no_training):
    with pytest.raises(SystemExit, match="--device cuda: CUDA is not available here.*use --device cpu"):
        pretrain_bert.main(["--device", "cuda"])


def test_output_paths_are_checked_before_training(no_training, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "a_folder").mkdir()
    for option in ("--save", "--losses"):
        with pytest.raises(SystemExit, match=f"{option}=.*a_file/model.pt.*is a file, not a folder"):
            pretrain_bert.main([*SMALL, option, str(a_file / "model.pt")])
        with pytest.raises(SystemExit, match=f"{option} must be a file path, got .*which is an existing folder"):
            pretrain_bert.main([*SMALL, option, str(tmp_path / "a_folder")])
    with pytest.raises(SystemExit, match="--losses and --save must be two different files"):
        pretrain_bert.main([*SMALL, "--save", str(tmp_path / "x"), "--losses", str(tmp_path / "x")])
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit, match="--save=.*cannot be written"):
            pretrain_bert.main([*SMALL, "--save", str(locked / "model.pt")])
    assert a_file.read_text() == "x"


def test_an_existing_output_is_refused_before_training_unless_overwrite(no_training, tmp_path):
    earlier = tmp_path / "bert.pt"
    earlier.write_bytes(b"a checkpoint from an earlier run")
    losses = tmp_path / "losses.json"
    losses.write_text("{}")
    for option, path in (("--save", earlier), ("--losses", losses)):
        with pytest.raises(SystemExit, match=f"{option}=.*already exists and would be replaced.*--overwrite"):
            pretrain_bert.main([*SMALL, option, str(path)])
    assert earlier.read_bytes() == b"a checkpoint from an earlier run" and losses.read_text() == "{}"
    with pytest.raises(AssertionError, match="the data was built"):  # with --overwrite the checks pass
        pretrain_bert.main([*SMALL, "--save", str(earlier), "--losses", str(losses), "--overwrite"])


def test_a_trained_model_survives_an_output_that_fails_after_training(tmp_path, monkeypatch):
    """The folder of --save and --losses disappears during the training, and a file appears at another --save:
    the outputs go to new files in the current folder, the error says where, the other file is left as it is."""
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    load = pretrain_bert.load_documents

    def load_while_the_folder_goes(args):
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
        return load(args)

    monkeypatch.setattr(pretrain_bert, "load_documents", load_while_the_folder_goes)
    tiny = [*SMALL, "--steps", "2", "--num-hiddens", "16", "--ffn-num-hiddens", "32", "--num-heads", "2",
            "--num-blks", "1", "--batch-size", "8"]
    with pytest.raises(SystemExit) as err:
        pretrain_bert.main([*tiny, "--save", str(out / "bert.pt"), "--losses", str(out / "losses.json")])
    message = str(err.value)
    assert message.startswith("pretrain_bert: the training finished, but --save=")
    rescued = sorted(cwd.iterdir())
    assert [p.suffix for p in rescued] == [".pt", ".json"] or [p.suffix for p in rescued] == [".json", ".pt"]
    for p in rescued:
        assert f"it was written to {p} instead" in message
    model, vocab = load_pretrained(next(p for p in rescued if p.suffix == ".pt"))
    assert len(vocab) == model.config["vocab_size"] and model.config["num_hiddens"] == 16
    assert len(json.loads(next(p for p in rescued if p.suffix == ".json").read_text())["losses"]) == 2

    other = tmp_path / "other.pt"
    monkeypatch.setattr(pretrain_bert, "load_documents",
                        lambda args: (other.write_bytes(b"another run's checkpoint"), load(args))[1])
    with pytest.raises(SystemExit, match="--save=.*other.pt.*already exists.*it was written to .* instead"):
        pretrain_bert.main([*tiny, "--save", str(other)])
    assert other.read_bytes() == b"another run's checkpoint"
    assert len(list(cwd.glob("pretrain_bert-other-*.pt"))) == 1


def test_a_corpus_too_small_is_a_clear_error():
    with pytest.raises(SystemExit, match="pretrain_bert: .*leaves the train.*num_sentences >= 20"):
        pretrain_bert.main(["--num-sentences", "8", "--device", "cpu"])


# ------------------------------------------------------------------------------------------- outputs


def test_save_writes_a_complete_checkpoint_that_loads_in_one_call(tmp_path):
    save = tmp_path / "missing" / "dir" / "model.pt"  # folders are created (before training)
    losses = tmp_path / "losses.json"
    result = pretrain_bert.main([*SMALL, "--steps", "3", "--num-hiddens", "16", "--ffn-num-hiddens", "32",
                                 "--num-heads", "2", "--num-blks", "1", "--save", str(save), "--losses", str(losses)])
    model, vocab = load_pretrained(save)
    corpus = load_corpus(300)
    assert vocab.idx_to_token == corpus.src_vocab.idx_to_token
    assert model.config == dict(vocab_size=len(vocab), num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_blks=1,
                                dropout=0.0, max_len=40, num_segments=2, activation="relu", eps=1e-5,
                                embedding_norm=False, tie_weights=False)
    torch.manual_seed(0)
    untrained = BERTModel(**model.config)
    assert not torch.equal(untrained.encoder.token_embedding.weight, model.encoder.token_embedding.weight)
    extra = torch.load(save, weights_only=True)["extra"]
    assert extra["options"]["steps"] == 3 and extra["options"]["save"] == str(save)
    data = BERTPretrainingDataset.from_corpus(corpus, "valid", max_len=40)
    with torch.no_grad():
        mlm, nsp, _ = pretraining_loss(model, *data.batch(range(8)))
    assert torch.isfinite(mlm) and torch.isfinite(nsp)
    assert json.loads(losses.read_text())["losses"] == result["losses"]
    assert sorted(p.name for p in save.parent.iterdir()) == ["model.pt"]  # atomic: nothing else left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.json", "missing"]


def test_wikitext2_offline_is_a_clear_error(tmp_path, monkeypatch):
    from course_lib import datasets

    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    remote = datasets.REMOTES["wikitext-2"]
    monkeypatch.setitem(datasets.REMOTES, "wikitext-2",
                        datasets.Remote(remote.filename, remote.sha1, ("http://127.0.0.1:9/wikitext-2-v1.zip",)))
    with pytest.raises(SystemExit, match="(?s)pretrain_bert: Could not get wikitext-2-v1.zip.*put it at"):
        pretrain_bert.main(["--data", "wikitext2", "--device", "cpu", "--steps", "1"])
