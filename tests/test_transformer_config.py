"""TransformerConfig: the builder's arguments as one frozen, checked value; the paper's sizes as configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib.transformer import (
    TRANSFORMER_BASE,
    TRANSFORMER_BIG,
    VASWANI_2017,
    TransformerConfig,
    TransformerDecoder,
    TransformerEncoder,
    build_transformer,
    count_parameters,
)

SMALL = dict(src_vocab_size=13, tgt_vocab_size=11, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_blks=2,
             dropout=0.1)


def closed_form_count(c: TransformerConfig) -> int:
    """Parameters of the post-norm model without attention biases, counted by hand."""
    D, F, L = c.num_hiddens, c.ffn_num_hiddens, c.num_blks
    ffn = D * F + F + F * D + D
    encoder_block = 4 * D * D + ffn + 2 * 2 * D  # W_q, W_k, W_v, W_o; the FFN; two LayerNorms
    decoder_block = 8 * D * D + ffn + 3 * 2 * D  # two attentions; the FFN; three LayerNorms
    embeddings = c.src_vocab_size * D if c.shared_embedding else (c.src_vocab_size + c.tgt_vocab_size) * D
    output = c.tgt_vocab_size * (1 if c.tie_weights else D + 1)
    return L * (encoder_block + decoder_block) + embeddings + output


@pytest.mark.parametrize("options", [{}, {"tie_weights": True}, {"use_bias": True, "norm_first": True, "impl": "sdpa"},
                                     {"shared_embedding": True, "tgt_vocab_size": 13, "max_len": 50}])
def test_a_config_builds_the_same_model_as_the_arguments(options):
    kwargs = {**SMALL, **options}
    config = TransformerConfig(**kwargs)
    torch.manual_seed(0)
    positional = [kwargs.pop(k) for k in list(SMALL)]
    from_args = build_transformer(*positional, **kwargs)
    torch.manual_seed(0)
    from_config = build_transformer(config)
    a, b = from_args.state_dict(), from_config.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert from_config.encoder.impl == from_config.decoder.impl == config.impl
    assert from_config.decoder.tie_weights == config.tie_weights
    assert (from_config.decoder.embedding is from_config.encoder.embedding) == config.shared_embedding


def test_encoder_and_decoder_from_config_take_their_own_vocabulary():
    config = TransformerConfig(**SMALL)
    assert TransformerEncoder.from_config(config).embedding.num_embeddings == 13
    assert TransformerDecoder.from_config(config).dense.out_features == 11


@pytest.mark.parametrize("name", ["base", "big"])
def test_the_papers_configs_give_the_sizes_of_table_3_and_the_closed_form_count(name):
    config = {"base": TRANSFORMER_BASE, "big": TRANSFORMER_BIG}[name]
    assert VASWANI_2017[name] == {k: getattr(config, k) for k in
                                  ("num_hiddens", "ffn_num_hiddens", "num_heads", "num_blks", "dropout")}
    assert config.shared_embedding and config.tie_weights
    with torch.device("meta"):
        assert count_parameters(build_transformer(config)) == closed_form_count(config)
    for options in ({"shared_embedding": False, "tie_weights": False}, {"shared_embedding": False}):
        small = config.replace(num_hiddens=16, ffn_num_hiddens=24, num_heads=4, num_blks=1, src_vocab_size=50,
                               tgt_vocab_size=50, **options)
        assert count_parameters(build_transformer(small)) == closed_form_count(small)


def test_a_config_is_frozen_and_replace_checks_the_change():
    config = TransformerConfig(**SMALL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dropout = 0.0  # type: ignore[misc]
    assert config.replace(dropout=0.0).dropout == 0.0 and config.dropout == 0.1
    with pytest.raises(ValueError, match="num_heads must divide num_hiddens"):
        config.replace(num_heads=3)


@pytest.mark.parametrize("change, error, message", [
    ({"num_heads": 3}, ValueError, "num_heads must divide num_hiddens"),
    ({"dropout": 1.5}, ValueError, "dropout"),
    ({"num_blks": 0}, ValueError, "num_blks must be an int >= 1"),
    ({"src_vocab_size": 2.0}, ValueError, "src_vocab_size must be an int"),
    ({"tie_weights": "yes"}, ValueError, "tie_weights must be True or False"),
    ({"impl": "fast"}, ValueError, "impl must be one of"),
    ({"shared_embedding": True}, ValueError, "shared_embedding needs one vocabulary"),
    ({"num_hidden": 8}, TypeError, "num_hidden"),  # a misspelt field is refused, never ignored
])
def test_bad_configs_are_refused_when_made(change, error, message):
    with pytest.raises(error, match=message):
        TransformerConfig(**{**SMALL, **change})
    if error is ValueError:
        with pytest.raises(error, match=message):
            build_transformer(**{**SMALL, **change})
