"""Bridges between the course's models and Hugging Face ``transformers``, both ways.

Chapter 6: :func:`from_huggingface` turns a Hugging Face ``BertForPreTraining``,
``BertForMaskedLM`` or ``BertModel`` into our ``course_lib.bert.BERTModel`` (same hidden
states, MLM and NSP logits); :func:`to_huggingface` builds the Hugging Face model
(:data:`HF_HEADS`) from ours. Both walk one list of corresponding modules
(``_encoder_pairs``). ``transformers`` is optional (the ``hf`` extra) and imported inside
the functions that need it, never when this module is imported.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.bert import BERTModel
from course_lib.transformer import ACTIVATIONS


def from_huggingface(model: nn.Module) -> BERTModel:
    """Our ``BERTModel`` with the weights of a Hugging Face ``transformers`` BERT.

    ``model``: a ``BertForPreTraining``, ``BertForMaskedLM``, ``BertModel`` (e.g.
    ``BertForPreTraining.from_pretrained("bert-base-uncased")``, where the internet is
    available). The result computes the same hidden states (``encoded_X`` =
    ``last_hidden_state``), MLM logits and NSP logits, with ``activation``, ``eps``,
    ``embedding_norm=True``, ``num_segments`` (token types) and ``tie_weights`` taken from
    the model's config. Parts the Hugging Face model lacks (a ``BertModel`` has no MLM
    or NSP head; one built with ``add_pooling_layer=False`` no pooler) keep their fresh
    initialization. Token ids are the Hugging Face tokenizer's, not a course ``Vocab``'s.
    ``attention_probs_dropout_prob`` becomes the attention dropout of every block.
    ``transformers`` is imported here only (the ``hf`` extra). A task model with a
    fine-tuned head of its own (``BertForSequenceClassification``, ...) is refused rather
    than converted without its head; pass its ``.bert`` to convert the encoder alone.
    """
    from transformers import PreTrainedModel

    bert = getattr(model, "bert", model)
    cfg = getattr(bert, "config", None)
    if not isinstance(bert, PreTrainedModel) or getattr(cfg, "model_type", None) != "bert" \
            or not hasattr(bert, "embeddings"):
        raise ValueError(f"expected a Hugging Face BERT model (BertModel, BertForPreTraining, ...), got {type(model).__name__}")
    if bert is not model:  # a task model: only the pretraining heads ("cls") have a place in ours
        heads = [name for name, child in model.named_children()
                 if name not in ("bert", "cls") and any(True for _ in child.parameters())]
        if heads:
            raise ValueError(
                f"{type(model).__name__} has a fine-tuned head ({', '.join(heads)}) that the course's BERTModel has no "
                "place for; from_huggingface converts BertModel, BertForPreTraining, BertForMaskedLM and "
                "BertForNextSentencePrediction. To convert the encoder alone, without that head, pass model.bert")
    act = cfg.hidden_act if isinstance(cfg.hidden_act, str) else ""
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act={cfg.hidden_act!r} is not supported (only {tuple(ACTIVATIONS)})")
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute" or getattr(cfg, "is_decoder", False):
        raise ValueError("only encoders with absolute position embeddings are supported")
    heads = getattr(model, "cls", None)
    predictions = getattr(heads, "predictions", None)
    emb = bert.embeddings
    tied = predictions is not None and predictions.decoder.weight is emb.word_embeddings.weight
    ours = BERTModel(
        cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_hidden_layers,
        cfg.hidden_dropout_prob, cfg.max_position_embeddings, num_segments=cfg.type_vocab_size, activation=act,
        eps=cfg.layer_norm_eps, embedding_norm=True, tie_weights=tied or predictions is None,
    )

    copy = _copy_weights
    ref = next(model.parameters())
    with torch.no_grad():
        enc = ours.encoder
        for ours_module, theirs_module in _encoder_pairs(enc, bert):
            copy(ours_module, theirs_module)
        enc.pos_embedding.copy_(emb.position_embeddings.weight.unsqueeze(0))
        for blk in enc.blks:
            blk.attention.attention.dropout_p = float(cfg.attention_probs_dropout_prob)
        if getattr(bert, "pooler", None) is not None:
            copy(ours.hidden[0], bert.pooler.dense)
        if predictions is not None:
            copy(ours.mlm.mlp[0], predictions.transform.dense)
            copy(ours.mlm.mlp[2], predictions.transform.LayerNorm)
            if not tied:
                ours.mlm.mlp[3].weight.copy_(predictions.decoder.weight)
            ours.mlm.mlp[3].bias.copy_(predictions.decoder.bias)  # tied models: the same tensor as predictions.bias
        if getattr(heads, "seq_relationship", None) is not None:
            copy(ours.nsp.output, heads.seq_relationship)
    return ours.to(device=ref.device, dtype=ref.dtype).train(model.training)


HF_HEADS = ("pretraining", "masked_lm")  #: what :func:`to_huggingface` can build


def _huggingface_config(model: BERTModel) -> dict[str, object]:
    """The ``transformers.BertConfig`` arguments of our model, or a ValueError naming what BERT lacks."""
    enc = model.encoder
    blks = list(enc.blks)
    if not hasattr(enc, "embedding_norm"):
        raise ValueError("embedding_norm=False: Hugging Face's BERT always applies a LayerNorm to the summed "
                         "embeddings; only a BERTModel built with embedding_norm=True (as BERT_CONFIGS) converts")
    if not blks:
        raise ValueError("num_blks=0: a Hugging Face BERT has at least one encoder layer")
    if any(blk.norm_first for blk in blks):
        raise ValueError("norm_first=True (pre-norm blocks): Hugging Face's BERT is post-norm")
    if any(getattr(blk.attention, w).bias is None for blk in blks for w in ("W_q", "W_k", "W_v", "W_o")):
        raise ValueError("use_bias=False (attention projections without biases): Hugging Face's BERT has them")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if len({m.eps for m in norms}) > 1 or any(m.weight is None or m.bias is None for m in norms):
        raise ValueError(f"eps: Hugging Face's BERT has one layer_norm_eps and affine LayerNorms, got eps "
                         f"{sorted({m.eps for m in norms})}")
    acts = {blk.ffn.activation for blk in blks} | {type(model.mlm.mlp[1]).__name__.lower()}
    if len(acts) > 1:
        raise ValueError(f"activation: Hugging Face's BERT has one hidden_act, got {sorted(acts)}")
    hidden_p = {blk.addnorm1.dropout.p for blk in blks} | {blk.addnorm2.dropout.p for blk in blks} \
        | {enc.embedding_dropout.p}
    attention_p = {blk.attention.attention.dropout_p for blk in blks}
    if len(hidden_p) > 1 or len(attention_p) > 1:
        raise ValueError(f"dropout: Hugging Face's BERT has one hidden_dropout_prob and one "
                         f"attention_probs_dropout_prob, got {sorted(hidden_p)} and {sorted(attention_p)}")
    return dict(
        vocab_size=enc.token_embedding.num_embeddings, hidden_size=enc.token_embedding.embedding_dim,
        num_hidden_layers=len(blks), num_attention_heads=blks[0].attention.num_heads,
        intermediate_size=blks[0].ffn.dense1.out_features, hidden_act=blks[0].ffn.activation,
        hidden_dropout_prob=hidden_p.pop(), attention_probs_dropout_prob=attention_p.pop(),
        max_position_embeddings=enc.pos_embedding.shape[1], type_vocab_size=enc.segment_embedding.num_embeddings,
        layer_norm_eps=norms[0].eps, tie_word_embeddings=model.tie_weights, pad_token_id=0,
    )


def _copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s weight (and bias, if ``dst`` has one) into ``dst``, in place."""
    dst.weight.copy_(src.weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def _encoder_pairs(enc: nn.Module, bert: nn.Module):
    """(ours, theirs): the modules of our ``BERTEncoder`` and of a Hugging Face ``BertModel``
    that hold the same weights, both directions of the bridge use it (the position
    embeddings, a parameter here and a module there, are copied by the callers)."""
    emb = bert.embeddings
    yield enc.token_embedding, emb.word_embeddings
    yield enc.segment_embedding, emb.token_type_embeddings
    yield enc.embedding_norm, emb.LayerNorm
    for blk, layer in zip(enc.blks, bert.encoder.layer):
        att = layer.attention
        yield blk.attention.W_q, att.self.query
        yield blk.attention.W_k, att.self.key
        yield blk.attention.W_v, att.self.value
        yield blk.attention.W_o, att.output.dense
        yield blk.addnorm1.ln, att.output.LayerNorm
        yield blk.ffn.dense1, layer.intermediate.dense
        yield blk.ffn.dense2, layer.output.dense
        yield blk.addnorm2.ln, layer.output.LayerNorm


def to_huggingface(model: BERTModel, head: str = "pretraining") -> nn.Module:
    """A Hugging Face ``transformers`` BERT with our ``BERTModel``'s weights: the reverse of :func:`from_huggingface`.

    ``head="pretraining"``: a ``BertForPreTraining`` (encoder, pooler, MLM and NSP heads);
    ``head="masked_lm"``: a ``BertForMaskedLM`` (encoder and MLM head; the model that
    ``transformers.pipeline("fill-mask", ...)`` takes). Given the same token ids,
    segments (``token_type_ids``) and padding (``attention_mask``, 1 on the first
    ``valid_lens`` positions), it computes the same hidden states, MLM logits and NSP
    logits as ``model``; ``from_huggingface`` of the result gives ``model`` back, weight
    for weight. It is on ``model``'s device and dtype, in its train/eval mode, and shares
    no tensor with it. Token ids stay the course vocabulary's: a Hugging Face tokenizer
    for it must map each token to the same id (the course ``Vocab`` puts ``<pad>`` at 0,
    Hugging Face's ``pad_token_id``).

    Only a model that Hugging Face's BERT can express converts; otherwise a
    ``ValueError`` names the option: ``embedding_norm=False`` (the default of the course's
    small BERT, as d2l's; build it with ``embedding_norm=True``), pre-norm blocks
    (``norm_first``), attention projections without biases (``use_bias=False``), or
    LayerNorm ``eps``, activations or dropout rates that differ between layers.
    ``transformers`` is imported here only (the ``hf`` extra).
    """
    if not isinstance(model, BERTModel):
        raise TypeError(f"expected a course_lib.bert.BERTModel, got {type(model).__name__}")
    if head not in HF_HEADS:
        raise ValueError(f"head must be one of {HF_HEADS}, got {head!r}")
    config = _huggingface_config(model)
    import transformers

    theirs = (transformers.BertForPreTraining if head == "pretraining" else transformers.BertForMaskedLM)(
        transformers.BertConfig(**config))
    bert, heads, enc = theirs.bert, theirs.cls, model.encoder

    copy = _copy_weights
    with torch.no_grad():
        for ours_module, theirs_module in _encoder_pairs(enc, bert):
            copy(theirs_module, ours_module)
        bert.embeddings.position_embeddings.weight.copy_(enc.pos_embedding[0])
        predictions = heads.predictions
        copy(predictions.transform.dense, model.mlm.mlp[0])
        copy(predictions.transform.LayerNorm, model.mlm.mlp[2])
        if not model.tie_weights:  # tied: the decoder's weight is the word embedding matrix, copied above
            predictions.decoder.weight.copy_(model.mlm.mlp[3].weight)
        predictions.decoder.bias.copy_(model.mlm.mlp[3].bias)
        if getattr(predictions, "bias", None) is not None and predictions.bias is not predictions.decoder.bias:
            predictions.bias.copy_(model.mlm.mlp[3].bias)
        if head == "pretraining":
            copy(bert.pooler.dense, model.hidden[0])
            copy(heads.seq_relationship, model.nsp.output)
    ref = next(model.parameters())
    return theirs.to(device=ref.device, dtype=ref.dtype).train(model.training)



__all__ = ["HF_HEADS", "from_huggingface", "to_huggingface"]
