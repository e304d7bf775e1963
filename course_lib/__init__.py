"""course_lib: the companion package of the course *Attention, from kernel regression to BERT and GPT*.

One small module per idea, in book order:

==========================  ===========================================
module                      chapter
==========================  ===========================================
``course_lib.utils``        every chapter: seeding and device choice
``course_lib.plotting``     every chapter: line plots and heatmaps
``course_lib.notebook_figures``  every chapter: figures stored as the book shows them
``course_lib.explorer``     3 to 6: interactive attention explorers for the
                            online book (``plotting.attention_explorer``)
``course_lib.kernel_regression``  1. attention pooling (Nadaraya–Watson)
``course_lib.masking``      2. masked softmax and mask helpers
``course_lib.attention_scoring``  2. additive and scaled dot-product attention
``course_lib.benchmark``    2. timing and peak memory of attention
``course_lib.multihead_attention``  4. multi-head and local-window self-attention
``course_lib.attention``    4-7. attention after the projections, written once:
                            heads, masks, both paths, grouped heads, rotation hook
``course_lib.kv_cache``     5, 7. the key/value cache (``KVCache.update``)
``course_lib.seq2seq``      3. RNN encoder, plain and Bahdanau decoders
``course_lib.training``     3, 5, 6. training loop, schedules, early stopping
``course_lib.decoding``     3, 5. greedy, batched and beam-search decoding, BLEU
``course_lib.positional_encoding``  4, 7. sinusoidal and learned positional encodings;
                            rotary positions (``apply_rotary``)
``course_lib.transformer_encoder``  5. FFN, AddNorm, the encoder block and encoder
``course_lib.transformer_decoder``  5. the causal decoder block and decoder
``course_lib.transformer``  5. the whole model: ``TransformerConfig``, the
                            paper's sizes, ``build_transformer``
``course_lib.bert``         6. the BERT model and its fine-tuning heads
``course_lib.bert_config``  6. ``BERTConfig``, BERT-Base and -Large, the
                            parameter count in closed form
``course_lib.bert_data``    6. BERT's inputs, MLM masking, NSP pairs, datasets
``course_lib.bert_losses``  6. the pretraining losses (masked LM, next sentence)
``course_lib.bert_checkpoint``  6. saving and loading a BERT with its vocabulary
``course_lib.hf_bridge``    6, 7. to and from Hugging Face ``transformers`` (BERT;
                            GPT-2 and Llama into the course's GPT)
``course_lib.pretrain_bert``  6. BERT pretraining on one or several GPUs
                            (``torchrun -m course_lib.pretrain_bert``)
``course_lib.stats``        3, 5, 6. intervals for measured rates (Wilson)
``course_lib.efficient_attention``  7. tiled attention (online softmax), its peak memory
``course_lib.gpt``          7. the decoder-only model: ``GPTConfig``, RMSNorm, pre-norm
                            blocks, parameter counts (GPT-2 small, Llama 2 7B)
``course_lib.gpt_attention``  7. causal self-attention: grouped key/value heads,
                            rotary positions, sliding window
``course_lib.gpt_cache``    7. the rolling (sliding-window) cache, cache memory
``course_lib.gpt_generate``  7. greedy decoding, temperature, top-k and top-p sampling
``course_lib.gpt_translation``  7. translation as "english <sep> french <eos>": encoding,
                            batches with the loss on the French, training, translating
==========================  ===========================================

Data for chapters 3 to 6: ``course_lib.corpus`` (the generated English–French corpus,
with ``corpus_lexicon``, ``corpus_grammar``, ``corpus_french`` and ``corpus_probes``,
the cue probes of chapter 6), ``course_lib.text`` (vocabularies, padded batches, BLEU) and
``course_lib.datasets`` (real corpora, opt-in, verified downloads).
"""

from course_lib.attention_scoring import (
    IMPLEMENTATIONS,
    AdditiveAttention,
    DotProductAttention,
    dot_product_attention,
)
from course_lib.kernel_regression import (
    KERNELS,
    NWKernelRegression,
    boxcar_kernel,
    constant_kernel,
    epanechnikov_kernel,
    gaussian_kernel,
    nadaraya_watson,
)
from course_lib.multihead_attention import (
    MultiHeadAttention,
    local_attention,
    merge_heads,
    split_heads,
    transpose_output,
    transpose_qkv,
)
from course_lib.positional_encoding import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    apply_rotary,
    relative_position_map,
    sinusoidal_encoding,
)
from course_lib.transformer import (
    VASWANI_2017,
    AddNorm,
    TransformerConfig,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    build_transformer,
    count_parameters,
)
from course_lib.masking import causal_mask, local_window_mask, masked_softmax, padding_mask
from course_lib.plotting import plot, show_heatmaps
from course_lib.stats import wilson_interval
from course_lib.utils import REQUIRE_CUDA_ENV, set_seed, try_gpu

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATIONS",
    "AdditiveAttention",
    "DotProductAttention",
    "dot_product_attention",
    "causal_mask",
    "local_window_mask",
    "masked_softmax",
    "padding_mask",
    "LearnedPositionalEmbedding",
    "apply_rotary",
    "MultiHeadAttention",
    "PositionalEncoding",
    "local_attention",
    "merge_heads",
    "relative_position_map",
    "sinusoidal_encoding",
    "split_heads",
    "transpose_output",
    "transpose_qkv",
    "VASWANI_2017",
    "AddNorm",
    "TransformerConfig",
    "PositionWiseFFN",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "build_transformer",
    "count_parameters",
    "KERNELS",
    "NWKernelRegression",
    "REQUIRE_CUDA_ENV",
    "boxcar_kernel",
    "constant_kernel",
    "epanechnikov_kernel",
    "gaussian_kernel",
    "nadaraya_watson",
    "plot",
    "set_seed",
    "show_heatmaps",
    "try_gpu",
    "wilson_interval",
]
