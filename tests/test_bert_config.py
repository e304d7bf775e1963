"""BERTConfig: BERTModel's arguments as one frozen, checked value; the paper's sizes; the closed-form count."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib.bert import BERT_CONFIGS, BERTEncoder, BERTModel
from course_lib.bert_config import BERT_BASE, BERT_LARGE, BERTConfig, bert_parameter_count

SMALL = BERTConfig(23, 8, 16, 2, 2, 0.1, 12)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied matrix once


@pytest.mark.parametrize("options", [{}, {"tie_weights": True, "embedding_norm": True},
                                     {"activation": "gelu", "eps": 1e-12, "num_segments": 3, "impl": "sdpa"}])
def test_from_config_builds_the_same_model_as_the_arguments(options):
    config = SMALL.replace(**options)
    torch.manual_seed(0)
    by_args = BERTModel(**config.kwargs(), impl=config.impl)
    torch.manual_seed(0)
    by_config = BERTModel.from_config(config)
    a, b = by_args.state_dict(), by_config.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert by_config.config == config.kwargs() and "impl" not in by_config.config
    assert by_config.impl == config.impl and by_config.tie_weights == config.tie_weights
    assert BERTModel(**by_config.config).config == by_config.config  # the dict still rebuilds the model
    assert BERTEncoder.from_config(config).segment_embedding.num_embeddings == config.num_segments


@pytest.mark.parametrize("seed", range(6))
def test_the_closed_form_count_equals_the_built_model_for_generated_configs(seed):
    g = torch.Generator().manual_seed(seed)

    def pick(low, high):
        return int(torch.randint(low, high, (), generator=g))

    H = pick(1, 4)
    config = BERTConfig(pick(5, 60), H * pick(1, 5), pick(3, 30), H, pick(1, 4), 0.0, pick(4, 40),
                        num_segments=pick(1, 4), embedding_norm=bool(seed % 2), tie_weights=bool(seed // 2 % 2))
    with torch.device("meta"):
        model = BERTModel.from_config(config)
    assert bert_parameter_count(config) == count(model)
    assert bert_parameter_count(config, heads=False) == count(model.encoder)
    assert bert_parameter_count(**config.kwargs()) == count(model)  # the dict form, as the chapter calls it


def test_the_papers_sizes_are_configs_and_dicts():
    assert BERT_CONFIGS == {"base": BERT_BASE.kwargs(), "large": BERT_LARGE.kwargs()}
    assert (BERT_BASE.num_hiddens, BERT_BASE.num_blks, BERT_BASE.num_heads) == (768, 12, 12)
    assert (BERT_LARGE.num_hiddens, BERT_LARGE.num_blks, BERT_LARGE.num_heads) == (1024, 24, 16)
    assert bert_parameter_count(BERT_BASE) == 110_106_428  # the count the chapter checks against Hugging Face's


def test_a_wrong_name_is_refused_not_ignored():
    with pytest.raises(TypeError, match="num_layers"):
        bert_parameter_count(**BERT_CONFIGS["base"], num_layers=12)
    with pytest.raises(TypeError, match="both by position and by name"):
        bert_parameter_count(10, 8, 16, num_hiddens=8)
    with pytest.raises(TypeError, match="at most 7 positional"):
        bert_parameter_count(10, 8, 16, 2, 2, 0.1, 12, 2)
    with pytest.raises(ValueError, match="expects a BERTConfig"):
        BERTModel.from_config(BERT_CONFIGS["base"])


def test_a_config_is_frozen_and_checked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMALL.num_blks = 3  # type: ignore[misc]
    for change, message in [({"num_heads": 3}, "num_heads must divide num_hiddens"), ({"eps": 0.0}, "eps"),
                            ({"activation": "tanh"}, "activation must be one of"), ({"dropout": -0.1}, "dropout"),
                            ({"tie_weights": 1}, "tie_weights must be True or False"), ({"impl": "x"}, "impl must be")]:
        with pytest.raises(ValueError, match=message):
            SMALL.replace(**change)
