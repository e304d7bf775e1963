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



# ---------------------------------------------------------------- chapter 7: GPT-2 and Llama


def _gpt2_config(cfg) -> "GPTConfig":
    from course_lib.gpt import GPTConfig

    acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
    if cfg.activation_function not in acts:
        raise ValueError(f"GPT-2 with activation_function={cfg.activation_function!r} is not supported "
                         f"(only {tuple(acts)})")
    if not cfg.scale_attn_weights or cfg.scale_attn_by_inverse_layer_idx or getattr(cfg, "add_cross_attention", False):
        raise ValueError("only GPT-2's standard attention is supported (scores scaled by 1 / sqrt(Dh), "
                         "scale_attn_by_inverse_layer_idx=False, no cross-attention)")
    D = cfg.n_embd
    return GPTConfig(vocab_size=cfg.vocab_size, max_len=cfg.n_positions, num_hiddens=D, num_heads=cfg.n_head,
                     num_blks=cfg.n_layer, ffn_num_hiddens=cfg.n_inner or 4 * D, positions="learned",
                     norm="layernorm", ffn=acts[cfg.activation_function], bias=True,
                     tie_weights=bool(getattr(cfg, "tie_word_embeddings", True)), dropout=float(cfg.resid_pdrop),
                     eps=float(cfg.layer_norm_epsilon))


def _llama_config(cfg) -> "GPTConfig":
    from course_lib.gpt import GPTConfig

    rope = getattr(cfg, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(cfg, "rope_theta")}
    if rope.get("rope_type", "default") != "default":
        raise ValueError("only Llama's default rotary positions are supported, "
                         f"got rope_type={rope.get('rope_type')!r} "
                         "(scaled variants such as Llama 3.1's change the frequencies)")
    if cfg.hidden_act != "silu":
        raise ValueError(f"Llama's feed-forward network must be SwiGLU (hidden_act='silu'), got {cfg.hidden_act!r}")
    if bool(cfg.attention_bias) != bool(getattr(cfg, "mlp_bias", False)):
        raise ValueError("the course's GPTConfig has one bias switch for every linear layer; this model has "
                         f"attention_bias={cfg.attention_bias} and mlp_bias={getattr(cfg, 'mlp_bias', False)}")
    head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return GPTConfig(vocab_size=cfg.vocab_size, max_len=cfg.max_position_embeddings, num_hiddens=cfg.hidden_size,
                     num_heads=cfg.num_attention_heads, num_blks=cfg.num_hidden_layers,
                     ffn_num_hiddens=cfg.intermediate_size, num_kv_heads=cfg.num_key_value_heads, head_size=head,
                     positions="rotary", norm="rmsnorm", ffn="swiglu", bias=bool(cfg.attention_bias),
                     tie_weights=bool(cfg.tie_word_embeddings), dropout=float(cfg.attention_dropout),
                     eps=float(cfg.rms_norm_eps), rotary_base=float(rope["rope_theta"]))


def halves_to_interleaved(num_heads: int, head_size: int) -> torch.Tensor:
    """Row order (H Dh,) that turns a ``q_proj``/``k_proj`` of Hugging Face's Llama into ours.

    Hugging Face's rotary code pairs feature i of a head with feature i + Dh/2;
    ``course_lib.positional_encoding.apply_rotary`` pairs 2i with 2i + 1. Our row
    ``h Dh + 2i`` is their row ``h Dh + i`` and our row ``h Dh + 2i + 1`` their row
    ``h Dh + i + Dh/2``: ``ours = theirs[index]``. Queries and keys are permuted alike,
    so every dot product, and the attention, is unchanged.
    """
    half = torch.arange(head_size // 2)
    within = torch.stack([half, half + head_size // 2], dim=1).flatten()  # (Dh,): 0, Dh/2, 1, Dh/2 + 1, ...
    return (torch.arange(num_heads).unsqueeze(1) * head_size + within).flatten()  # (H Dh,)


def _copy_linear(dst: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    dst.weight.copy_(weight)
    if dst.bias is not None:
        dst.bias.copy_(bias)


def gpt_from_huggingface(model: nn.Module):
    """Our ``course_lib.gpt.GPT`` with the weights of a Hugging Face ``GPT2LMHeadModel`` or ``LlamaForCausalLM``.

    ``net(tokens)`` then gives the same logits (B, T, V) as ``model(tokens).logits``,
    also one token at a time with ``net.make_cache()`` (``course_lib.gpt.generate``
    does this). The result has the model's dtype and device, in evaluation mode.

    * GPT-2: learned positions, LayerNorm, GELU (tanh), biases, tied output layer.
      GPT-2 stores its layers as ``Conv1D`` with the weight (in, out), the transpose
      of ``nn.Linear``'s (out, in): every matrix is transposed, and ``c_attn``'s
      (D, 3D) is cut into W_q, W_k and W_v.
    * Llama (any number of key/value heads, so grouped-query and multi-query models
      too): rotary positions, RMSNorm, SwiGLU (``up_proj`` -> ``ffn.dense1``,
      ``gate_proj`` -> ``ffn.gate``, ``down_proj`` -> ``ffn.dense2``). The rows of
      ``q_proj`` and ``k_proj`` are reordered within each head
      (:func:`halves_to_interleaved`), because Hugging Face pairs rotary features as
      halves and the course as interleaved pairs.

    ``transformers`` is imported only when a model is converted. In Colab (with the
    internet; not run by the tests)::

        import torch
        from transformers import AutoTokenizer, GPT2LMHeadModel
        from course_lib.gpt import from_huggingface, generate

        tokenizer = AutoTokenizer.from_pretrained("gpt2")
        net = from_huggingface(GPT2LMHeadModel.from_pretrained("gpt2"))   # 124,439,808 parameters
        prompt = torch.tensor([tokenizer.encode("Attention is")])
        out = generate(net, prompt, 20, top_p=0.9, generator=torch.Generator().manual_seed(0))
        print(tokenizer.decode(out[0]))

    A small Llama-architecture model (e.g. ``LlamaForCausalLM.from_pretrained(...)``
    of a checkpoint with ``"model_type": "llama"``) loads the same way.
    """
    from transformers import PreTrainedModel

    from course_lib.gpt import GPT

    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if not isinstance(model, PreTrainedModel) or kind not in ("gpt2", "llama") or not hasattr(model, "lm_head"):
        raise ValueError(f"expected a Hugging Face GPT2LMHeadModel or LlamaForCausalLM, got {type(model).__name__}"
                         f"{'' if kind is None else f' (model_type={kind!r})'}")
    ours = GPT(_gpt2_config(cfg) if kind == "gpt2" else _llama_config(cfg))
    H, Hkv, Dh, D = ours.config.num_heads, ours.config.kv_heads, ours.config.head_dim, ours.config.num_hiddens
    ref = next(model.parameters())
    with torch.no_grad():
        if kind == "gpt2":
            tr = model.transformer
            ours.embedding.weight.copy_(tr.wte.weight)
            ours.pos_embedding.weight.copy_(tr.wpe.weight)
            for blk, h in zip(ours.blks, tr.h):
                a, W, b = blk.attention, h.attn.c_attn.weight, h.attn.c_attn.bias  # (D, 3D) and (3D,): q | k | v
                for i, lin in enumerate((a.W_q, a.W_k, a.W_v)):
                    # Conv1D keeps (in, out); nn.Linear (out, in)
                    _copy_linear(lin, W[:, i * D : (i + 1) * D].T, b[i * D : (i + 1) * D])
                _copy_linear(a.W_o, h.attn.c_proj.weight.T, h.attn.c_proj.bias)
                _copy_linear(blk.ffn.dense1, h.mlp.c_fc.weight.T, h.mlp.c_fc.bias)
                _copy_linear(blk.ffn.dense2, h.mlp.c_proj.weight.T, h.mlp.c_proj.bias)
                for dst, src in ((blk.norm1, h.ln_1), (blk.norm2, h.ln_2)):
                    _copy_linear(dst, src.weight, src.bias)
            _copy_linear(ours.norm, tr.ln_f.weight, tr.ln_f.bias)
        else:
            base = model.model
            ours.embedding.weight.copy_(base.embed_tokens.weight)
            q_rows, k_rows = halves_to_interleaved(H, Dh), halves_to_interleaved(Hkv, Dh)
            for blk, layer in zip(ours.blks, base.layers):
                a, s = blk.attention, layer.self_attn
                bias = lambda lin, rows=None: None if lin.bias is None else (  # noqa: E731
                    lin.bias if rows is None else lin.bias[rows])
                _copy_linear(a.W_q, s.q_proj.weight[q_rows], bias(s.q_proj, q_rows))
                _copy_linear(a.W_k, s.k_proj.weight[k_rows], bias(s.k_proj, k_rows))
                _copy_linear(a.W_v, s.v_proj.weight, bias(s.v_proj))
                _copy_linear(a.W_o, s.o_proj.weight, bias(s.o_proj))
                _copy_linear(blk.ffn.dense1, layer.mlp.up_proj.weight, bias(layer.mlp.up_proj))
                _copy_linear(blk.ffn.gate, layer.mlp.gate_proj.weight, bias(layer.mlp.gate_proj))
                _copy_linear(blk.ffn.dense2, layer.mlp.down_proj.weight, bias(layer.mlp.down_proj))
                blk.norm1.weight.copy_(layer.input_layernorm.weight)
                blk.norm2.weight.copy_(layer.post_attention_layernorm.weight)
            ours.norm.weight.copy_(base.norm.weight)
        if not ours.config.tie_weights:
            ours.dense.weight.copy_(model.lm_head.weight)
    return ours.to(device=ref.device, dtype=ref.dtype).eval()


__all__ = ["HF_HEADS", "from_huggingface", "gpt_from_huggingface", "halves_to_interleaved", "to_huggingface"]
