"""Chapter 6: BERT checkpoints, a model with its configuration and vocabulary in one file.

:func:`save_pretrained` writes such a file, atomically; :func:`load_pretrained` gives back
``(model, vocab)``. ``python -m course_lib.pretrain_bert --save`` writes one.
"""

from __future__ import annotations

import torch

from course_lib._checks import atomic_write, check_bool, check_device, check_vocab_has
from course_lib.bert import BERTModel
from course_lib.text import Vocab


#: The ``format`` entry of a checkpoint written by :func:`save_pretrained`.
CHECKPOINT_FORMAT = "course_lib.bert.BERTModel/1"


def save_pretrained(model: BERTModel, vocab: Vocab, path, extra: dict | None = None, overwrite: bool = False) -> None:
    """Write a complete, reloadable artifact: the weights, the model's configuration and its vocabulary.

    One file (``torch.save`` of plain tensors, numbers, strings and lists, which
    ``torch.load(..., weights_only=True)`` reads safely), written atomically: a temporary
    file next to ``path``, renamed when complete, so that an interrupted save never
    leaves a damaged file nor destroys an earlier one. ``extra`` (a dict of numbers,
    strings and lists, e.g. the training options) is stored alongside.
    :func:`load_pretrained` reads it back.

    An existing file at ``path`` (an earlier model, perhaps) is not replaced unless
    ``overwrite=True``: a ``FileExistsError`` that leaves it as it is.
    """
    check_bool("overwrite", overwrite)
    if not isinstance(model, BERTModel):
        raise TypeError(f"save_pretrained expects a BERTModel, got {type(model).__name__}")
    check_vocab_has(vocab, (), "save_pretrained")
    if len(vocab) != model.config["vocab_size"]:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model's vocab_size is "
                         f"{model.config['vocab_size']}: save the vocabulary the model was trained with")
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "vocab": list(vocab.idx_to_token),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": dict(extra or {})}
    atomic_write(path, lambda tmp: torch.save(payload, tmp), overwrite=overwrite)


def load_pretrained(path, map_location: str | torch.device = "cpu") -> tuple[BERTModel, Vocab]:
    """``(model, vocab)`` from a file of :func:`save_pretrained` (e.g. ``pretrain_bert --save``).

    The model is rebuilt from the stored configuration, its weights loaded strictly, and
    returned in evaluation mode on ``map_location``; ``vocab`` is the vocabulary it was
    trained with. The file is read with ``weights_only=True`` (no code is run). A file
    that is not such a checkpoint, or is damaged, raises a ValueError that says so.
    """
    device = check_device("map_location", map_location)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated file, another format, a pickle that needs code
        raise ValueError(f"{path} is not a readable course_lib BERT checkpoint (written by save_pretrained or "
                         f"pretrain_bert --save): {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (a bare state dict: build the model yourself and call load_state_dict)" \
            if isinstance(payload, dict) and "format" not in payload else ""
        raise ValueError(f"{path} is not a course_lib BERT checkpoint: expected format {CHECKPOINT_FORMAT!r}, "
                         f"got {found!r}{hint}")
    config, tokens, state = payload.get("config"), payload.get("vocab"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(tokens, list) or not isinstance(state, dict):
        raise ValueError(f"{path} is a damaged checkpoint: its config, vocab or state_dict is missing")
    vocab = Vocab.from_tokens(tokens, f"the vocabulary stored in {path}")
    model = BERTModel(**config)
    model.load_state_dict(state)
    return model.to(device).eval(), vocab



__all__ = ["CHECKPOINT_FORMAT", "load_pretrained", "save_pretrained"]
