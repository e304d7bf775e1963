"""Homework 5 (the Transformer): slips, trivial answers and alternative correct answers."""

# layer_norm's slips differ from the solution in one place each.
def _ln(stats="mean = X.mean(dim=-1, keepdim=True)\n    var = ((X - mean) ** 2).mean(dim=-1, keepdim=True)",
        out="gamma * (X - mean) / torch.sqrt(var + eps) + beta"):
    return f'''
def layer_norm(X, gamma, beta, eps=1e-5):
    {stats}
    return {out}
'''


def _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)", scale="math.sqrt(d)", fill='float("-inf")'):
    return f'''
def causal_attention_weights(Q, K):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    scores = Q @ K.transpose(1, 2) / {scale}
    keep = {mask}
    return torch.softmax(scores.masked_fill(~keep, {fill}), dim=-1)
'''


def _step(scale="math.sqrt(W_k.shape[1])", mask="", cache_out="(K, V)"):
    return f'''
def attention_step(x, W_q, W_k, W_v, cache=None):
    q, k, v = x @ W_q, (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    K, V = (k, v) if cache is None else (torch.cat([cache[0], k], dim=1), torch.cat([cache[1], v], dim=1))
    scores = (K @ q.unsqueeze(-1)).squeeze(-1) / {scale}
    {mask}
    w = torch.softmax(scores, dim=-1)
    return (w.unsqueeze(1) @ V).squeeze(1), {cache_out}
'''


def _count(attention="4 * D * D + (4 * D if use_bias else 0)", ffn="2 * D * F_ + F_ + D", norm="2 * D",
           decoder="2 * attention + ffn + 3 * norm", emb="Vs * D + (0 if shared_embedding else Vt * D)",
           out="(0 if tie_weights else Vt * D) + Vt"):
    return f'''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    Vs, Vt, D, F_, H = src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads
    attention = {attention}
    ffn = {ffn}
    norm = {norm}
    encoder = attention + ffn + 2 * norm
    decoder = {decoder}
    return {emb} + num_blks * (encoder + decoder) + {out}
'''


_GLOBAL_STEP = '''
_KV = {}


def attention_step(x, W_q, W_k, W_v, cache=None):
    q, k, v = x @ W_q, (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    if cache is None:
        _KV["K"], _KV["V"] = k, v
    else:
        _KV["K"], _KV["V"] = torch.cat([_KV["K"], k], dim=1), torch.cat([_KV["V"], v], dim=1)
    K, V = _KV["K"], _KV["V"]
    w = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_k.shape[1]), dim=-1)
    return (w.unsqueeze(1) @ V).squeeze(1), (K, V)
'''

_META_COUNT = '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    nn, D = torch.nn, num_hiddens
    with torch.device("meta"):
        def block(attentions, norms):
            layers = [nn.Linear(D, D, bias=use_bias) for _ in range(4 * attentions)]
            layers += [nn.Linear(D, ffn_num_hiddens), nn.Linear(ffn_num_hiddens, D)] + [nn.LayerNorm(D) for _ in range(norms)]
            return nn.ModuleList(layers)
        blocks = [block(1, 2) for _ in range(num_blks)] + [block(2, 3) for _ in range(num_blks)]
        src = nn.Embedding(src_vocab_size, D)
        tgt = src if shared_embedding else nn.Embedding(tgt_vocab_size, D)
        out = nn.Linear(D, tgt_vocab_size)
        if tie_weights:
            out.weight = tgt.weight
        model = nn.ModuleList(blocks + [src, tgt, out])
    return sum(p.numel() for p in model.parameters())
'''

_BUILT = '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    with torch.device("meta"):
        model = course_lib.build_transformer(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                             num_blks, 0.0, use_bias=use_bias, tie_weights=tie_weights,
                                             shared_embedding=shared_embedding)
    return course_lib.count_parameters(model)
'''


SLIPS = {
    "q1": [
        ("statistics over the batch axis (BatchNorm)",
         {"layer_norm": _ln(stats="mean = X.mean(dim=0, keepdim=True)\n    var = ((X - mean) ** 2).mean(dim=0, keepdim=True)")},
         "not each feature across the batch: that is BatchNorm"),
        ("torch.var's unbiased default (divides by D - 1)",
         {"layer_norm": _ln(stats="mean = X.mean(dim=-1, keepdim=True)\n    var = X.var(dim=-1, keepdim=True)")},
         "the variance divides by D, not by D - 1"),
        ("eps added to the standard deviation",
         {"layer_norm": _ln(out="gamma * (X - mean) / (torch.sqrt(var) + eps) + beta")},
         "eps goes inside the square root"),
        ("gamma and beta forgotten", {"layer_norm": _ln(out="(X - mean) / torch.sqrt(var + eps)")},
         "multiply by gamma and add beta"),
        ("statistics over all positions and features of a sequence",
         {"layer_norm": _ln(stats="mean = X.mean(dim=(-2, -1), keepdim=True)\n    var = ((X - mean) ** 2).mean(dim=(-2, -1), keepdim=True)")},
         "normalize each position on its own"),
        ("calls torch.nn.functional.layer_norm", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return F.layer_norm(X, X.shape[-1:], gamma, beta, eps)
'''}, "write it yourself: do not call torch.nn.functional.layer_norm"),
        ("subtracts the mean in place (X -= mean)", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    X -= X.mean(dim=-1, keepdim=True)
    return gamma * X / torch.sqrt((X ** 2).mean(dim=-1, keepdim=True) + eps) + beta
'''}, "changed its argument X"),
    ],
    "q2": [
        ("strict triangle: the diagonal masked too",
         {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq - 1)")},
         "a query attends to its own position too"),
        ("mask aligned to the first positions (tril without the offset)",
         {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).tril()")},
         "the queries are the LAST Tq positions"),
        ("weights zeroed after the softmax, not renormalized", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    weights = torch.softmax(Q @ K.transpose(1, 2) / math.sqrt(d), dim=-1)
    return weights * torch.ones(Tq, Tk).tril(Tk - Tq)
'''}, "mask the scores BEFORE the softmax"),
        ("masked scores set to 0 (scores times the mask)", {"causal_attention_weights": _causal(fill="0.0")},
         "masked scores must become -inf"),
        ("no 1/sqrt(d) scaling", {"causal_attention_weights": _causal(scale="1.0")}, "divide the scores by sqrt(d)"),
        ("scales Q in place", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    Q /= math.sqrt(d)
    keep = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
    return torch.softmax((Q @ K.transpose(1, 2)).masked_fill(~keep, float("-inf")), dim=-1)
'''}, "changed its argument Q"),
        ("calls course_lib.causal_mask", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    return course_lib.masked_softmax(Q @ K.transpose(1, 2) / math.sqrt(d), attn_mask=course_lib.causal_mask(Tq, Tk))
'''}, "write it yourself: do not call course_lib.causal_mask"),
    ],
    "q3": [
        ("attends over the old cache, then appends the new key", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    q, k, v = x @ W_q, (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    if cache is None:
        return v.squeeze(1), (k, v)
    K, V = cache
    w = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_k.shape[1]), dim=-1)
    return (w.unsqueeze(1) @ V).squeeze(1), (torch.cat([K, k], dim=1), torch.cat([V, v], dim=1))
'''}, "the newest position attends to itself too"),
        ("a causal mask for one query without the offset (sees only position 0)",
         {"attention_step": _step(mask='scores = scores.masked_fill(~torch.ones(1, K.shape[1], dtype=torch.bool).tril(), float("-inf"))')},
         "a causal mask must be aligned to the LAST position"),
        ("the cache replaced by the newest key and value", {"attention_step": _step(cache_out="(k, v)")},
         "the new cache holds every position so far"),
        ("the cache holds the inputs x (projected again at every step)", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    X = x.unsqueeze(1) if cache is None else torch.cat([cache[0], x.unsqueeze(1)], dim=1)   # (B, t + 1, D)
    q, K, V = x @ W_q, X @ W_k, X @ W_v
    w = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_k.shape[1]), dim=-1)
    return (w.unsqueeze(1) @ V).squeeze(1), (X, X)
'''}, "the cache holds the keys x W_k and values x W_v, not the inputs x"),
        ("scaled by the input size D instead of the key size", {"attention_step": _step(scale="math.sqrt(x.shape[-1])")},
         "the square root of the KEY size Dk"),
        ("keys and values kept in a module global, the cache ignored", {"attention_step": _GLOBAL_STEP}, "use the cache you are given"),
        ("divided by 2 (the square root of the example's Dk)", {"attention_step": _step(scale="2")}, "not by a constant"),
    ],
    "q4": [
        ("biases forgotten", {"transformer_parameter_count": _count(attention="4 * D * D", ffn="2 * D * F_", out="(0 if tie_weights else Vt * D)")},
         "count the biases"),
        ("LayerNorm parameters forgotten", {"transformer_parameter_count": _count(norm="0")}, "each AddNorm holds a LayerNorm"),
        ("tied output weight counted again", {"transformer_parameter_count": _count(out="Vt * D + Vt")},
         "the output layer's weight IS the target embedding matrix: count it once"),
        ("the decoder's cross-attention forgotten", {"transformer_parameter_count": _count(decoder="attention + ffn + 2 * norm")},
         "each decoder block has TWO attention layers"),
        ("one D x D matrix per head", {"transformer_parameter_count": _count(attention="4 * H * D * D + (4 * D if use_bias else 0)")},
         "the heads split D"),
        ("shared embedding counted twice", {"transformer_parameter_count": _count(emb="Vs * D + Vt * D")},
         "source and target use ONE embedding matrix: count it once"),
        ("builds the layers from torch.nn on the meta device and counts them", {"transformer_parameter_count": _META_COUNT},
         "do not call any torch.nn layer"),
    ],
}

TRIVIAL = {
    "q1": [
        {"layer_norm": _ln(out="X")},
        {"layer_norm": _ln(out="(X - mean) * gamma + beta")},                      # not divided by the standard deviation
        {"layer_norm": _ln(out="gamma * (X - mean) / torch.sqrt(var + 1e-5) + beta")},   # eps ignored
    ],
    "q2": [
        {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    return torch.full((Q.shape[0], Q.shape[1], K.shape[1]), 1.0 / K.shape[1])
'''},
        {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool)")},           # nothing masked
        {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).tril()")},    # the offset ignored
    ],
    "q3": [
        {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    return x @ W_v, ((x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1))
'''},
        {"attention_step": _step(scale="2")},                                          # the example's sqrt(Dk) as a constant
    ],
    "q4": [
        {"transformer_parameter_count": _count(attention="0", ffn="0", norm="0", emb="0", out="0")},
        {"transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    return 1596 if tie_weights else 1692
'''},
        {"transformer_parameter_count": _count().replace("num_blks * (encoder + decoder)", "(encoder + decoder)")},   # num_blks ignored
    ],
}

MORE_SLIPS = {
    "q1": [
        ("normalized across dim=1", {"layer_norm": _ln(stats="mean = X.mean(dim=1, keepdim=True)\n    var = ((X - mean) ** 2).mean(dim=1, keepdim=True)")},
         "not across dim=1"),
        ("gamma and beta swapped", {"layer_norm": _ln(out="beta * (X - mean) / torch.sqrt(var + eps) + gamma")}, "not the other way round"),
        ("divided by var + eps, no square root", {"layer_norm": _ln(out="gamma * (X - mean) / (var + eps) + beta")},
         "not by var + eps"),
        ("eps left out", {"layer_norm": _ln(out="gamma * (X - mean) / torch.sqrt(var) + beta")}, "add eps to the variance"),
        ("the default eps 1e-6", {"layer_norm": _ln().replace("eps=1e-5", "eps=1e-6")}, "the default eps is 1e-5"),
        ("torch.native_layer_norm", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return torch.native_layer_norm(X, X.shape[-1:], gamma, beta, eps)[0]
'''}, "do not call torch.native_layer_norm"),
        ("F.group_norm with one group", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    D = X.shape[-1]
    return (F.group_norm(X.reshape(-1, 1, D), 1, eps=eps).reshape(X.shape)) * gamma + beta
'''}, "do not call torch.nn.functional.group_norm"),
        ("F.instance_norm on a (N, 1, D) view", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return F.instance_norm(X.reshape(-1, 1, X.shape[-1]), eps=eps).reshape(X.shape) * gamma + beta
'''}, "do not call torch.nn.functional.instance_norm"),
        ("the aten operator through torch.ops", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return torch.ops.aten.native_layer_norm(X, list(X.shape[-1:]), gamma, beta, eps)[0]
'''}, "do not call torch.nn.functional.layer_norm"),
        ("F.layer_norm bound to a default argument", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5, norm=F.layer_norm):
    return norm(X, X.shape[-1:], gamma, beta, eps)
'''}, "do not use torch.nn.functional.layer_norm, reached through layer_norm"),
        ("torch.nn.LayerNorm with the weights copied in", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    ln = torch.nn.LayerNorm(X.shape[-1], eps=eps, dtype=X.dtype)
    with torch.no_grad():
        ln.weight.copy_(gamma)
        ln.bias.copy_(beta)
    return ln(X).detach()
'''}, "do not call torch.nn.LayerNorm"),
        ("RMS normalization of the centred vectors", {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return F.rms_norm(X - X.mean(-1, keepdim=True), X.shape[-1:], gamma, eps) + beta
'''}, "do not call torch.nn.functional.rms_norm"),
    ],
    "q2": [
        ("PyTorch's lower-right causal bias", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    from torch.nn.attention.bias import causal_lower_right
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    keep = causal_lower_right(Tq, Tk)._materialize()
    return torch.softmax((Q @ K.transpose(1, 2) / math.sqrt(d)).masked_fill(~keep, float("-inf")), dim=-1)
'''}, "do not call torch.nn.attention"),
        ("upper triangle: the future kept, the past masked",
         {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).triu(Tk - Tq)")},
         "mask the keys AFTER the query's position"),
        ("the offset with the wrong sign", {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).tril(Tq - Tk)")},
         "an offset of Tk - Tq, not Tq - Tk"),
        ("divided by d", {"causal_attention_weights": _causal(scale="d")}, "not by d"),
        ("divided by the square root of the number of keys", {"causal_attention_weights": _causal(scale="math.sqrt(Tk)")},
         "not of the number of keys"),
        ("torch.nn.Transformer's square subsequent mask", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    mask = torch.nn.Transformer.generate_square_subsequent_mask(Tk)[Tk - Tq:]
    return torch.softmax(Q @ K.transpose(1, 2) / math.sqrt(d) + mask, dim=-1)
'''}, "do not call torch.nn.Transformer.generate_square_subsequent_mask"),
        ("course_lib.causal_mask bound to a default argument", {"causal_attention_weights": '''
def causal_attention_weights(Q, K, mask=course_lib.causal_mask):
    Tq, Tk, d = Q.shape[1], K.shape[1], Q.shape[-1]
    return course_lib.masked_softmax(Q @ K.transpose(1, 2) / math.sqrt(d), attn_mask=mask(Tq, Tk))
'''}, "reached through causal_attention_weights"),
        ("PyTorch's attention with is_causal and identity values", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    Tk = K.shape[1]
    eye = torch.eye(Tk, dtype=Q.dtype).expand(Q.shape[0], Tk, Tk)
    Tq = Q.shape[1]
    mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
    return F.scaled_dot_product_attention(Q, K, eye, attn_mask=mask)
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("the mask from course_lib's padding helper", {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    B, Tq, d = Q.shape
    Tk = K.shape[1]
    lens = torch.arange(Tk - Tq + 1, Tk + 1).expand(B, Tq)
    keep = course_lib.masking.padding_mask(lens, Tq, Tk)
    return torch.softmax((Q @ K.transpose(1, 2) / math.sqrt(d)).masked_fill(~keep, float("-inf")), dim=-1)
'''}, "do not call course_lib.padding_mask"),
    ],
    "q3": [
        ("the new key put first in the cache", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    q, k, v = x @ W_q, (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    K, V = (k, v) if cache is None else (torch.cat([k, cache[0]], dim=1), torch.cat([v, cache[1]], dim=1))
    w = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_k.shape[1]), dim=-1)
    return (w.unsqueeze(1) @ V).squeeze(1), (K, V)
'''}, "the old keys and values first, then the newest"),
        ("no scaling", {"attention_step": _step(scale="1.0")}, "divide the scores by sqrt(Dk)"),
        ("PyTorch's attention with is_causal=True on one query (aligned to the first key)", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    k, v = (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    K = k if cache is None else torch.cat([cache[0], k], dim=1)
    V = v if cache is None else torch.cat([cache[1], v], dim=1)
    return F.scaled_dot_product_attention((x @ W_q).unsqueeze(1), K, V, is_causal=True).squeeze(1), (K, V)
'''}, "aligned to the LAST position"),
        ("the keys and values remembered in a default argument", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None, memory={}):
    q, k, v = x @ W_q, (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    if cache is None:
        memory["K"], memory["V"] = k, v
    else:
        memory["K"], memory["V"] = torch.cat([memory["K"], k], dim=1), torch.cat([memory["V"], v], dim=1)
    w = torch.softmax((memory["K"] @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_k.shape[1]), dim=-1)
    return (w.unsqueeze(1) @ memory["V"]).squeeze(1), (memory["K"], memory["V"])
'''}, "use the cache you are given"),
        ("course_lib's Transformer attention helper", {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    block = course_lib.transformer.BlockCache
    k, v = (x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1)
    K = k if cache is None else torch.cat([cache[0], k], dim=1)
    V = v if cache is None else torch.cat([cache[1], v], dim=1)
    y = course_lib.dot_product_attention((x @ W_q).unsqueeze(1), K, V)[0].squeeze(1)
    return y, tuple(block(K, V, None, None))[:2]
'''}, "do not call course_lib.BlockCache"),
    ],
    "q4": [
        ("a float returned (4.0 * D * D)", {"transformer_parameter_count": _count(attention="4.0 * D * D + (4 * D if use_bias else 0)")},
         "note the types: the result is float here, int in the expected result"),
        ("the attention biases counted as 3 D (W_o without a bias)", {"transformer_parameter_count": _count(attention="4 * D * D + (3 * D if use_bias else 0)")},
         "use_bias=True"),
        ("builds course_lib's model on the meta device and counts", {"transformer_parameter_count": _BUILT},
         "do not call course_lib.build_transformer"),
        ("the FFN's biases forgotten", {"transformer_parameter_count": _count(ffn="2 * D * F_")}, "count the biases of the position-wise FFN"),
        ("the output layer's bias forgotten", {"transformer_parameter_count": _count(out="(0 if tie_weights else Vt * D)")},
         "count the bias of the decoder's output layer"),
        ("a LayerNorm counted as D parameters", {"transformer_parameter_count": _count(norm="D")}, "gamma AND beta"),
        ("attention biases counted always", {"transformer_parameter_count": _count(attention="4 * D * D + 4 * D")},
         "only with use_bias=True"),
        ("attention biases never counted", {"transformer_parameter_count": _count(attention="4 * D * D")},
         "each of the four attention projections has a bias"),
        ("the encoder's blocks forgotten", {"transformer_parameter_count": _count().replace("num_blks * (encoder + decoder)", "num_blks * decoder")},
         "count the encoder's blocks too"),
        ("num_blks ignored", {"transformer_parameter_count": _count().replace("num_blks * (encoder + decoder)", "(encoder + decoder)")},
         "multiply the blocks by num_blks"),
        ("torch.nn.Transformer on the meta device", {"transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    with torch.device("meta"):
        core = torch.nn.Transformer(num_hiddens, num_heads, num_blks, num_blks, ffn_num_hiddens, 0.0, bias=use_bias)
    return sum(p.numel() for p in core.parameters())
'''}, "do not call torch.nn.Transformer"),
    ],
}

ALTERNATIVES = {
    # vector by vector, in float64, with Python sums
    "layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    D = X.shape[-1]
    rows = X.double().reshape(-1, D)
    out = torch.empty_like(rows)
    for r in range(rows.shape[0]):
        mean = rows[r].sum() / D
        var = ((rows[r] - mean) ** 2).sum() / D
        out[r] = (rows[r] - mean) / math.sqrt(float(var) + eps) * gamma.double() + beta.double()
    return out.reshape(X.shape).to(X.dtype)
''',
    # query by query, in float64, with a numerically stable softmax written out
    "causal_attention_weights": '''
def causal_attention_weights(Q, K):
    B, Tq, d = Q.shape
    Tk = K.shape[1]
    W = torch.zeros(B, Tq, Tk, dtype=torch.float64)
    for b in range(B):
        for i in range(Tq):
            last = Tk - Tq + i
            s = K[b, :last + 1].double() @ Q[b, i].double() / d ** 0.5
            e = torch.exp(s - s.max())
            W[b, i, :last + 1] = e / e.sum()
    return W
''',
    # PyTorch's fused kernel: one query over all the cached keys, no mask needed
    "attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    k_new, v_new = (x @ W_k)[:, None, :], (x @ W_v)[:, None, :]
    K = k_new if cache is None else torch.cat((cache[0], k_new), 1)
    V = v_new if cache is None else torch.cat((cache[1], v_new), 1)
    y = F.scaled_dot_product_attention((x @ W_q)[:, None, :], K, V)   # (B, 1, Dv)
    return y[:, 0], (K, V)
''',
    # list every tensor's shape with a name; a shared tensor keeps one name
    "transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    D, Fh = num_hiddens, ffn_num_hiddens
    shapes = {"src_emb": (src_vocab_size, D), "tgt_emb": (tgt_vocab_size, D)}
    if shared_embedding:
        shapes["tgt_emb"] = shapes.pop("src_emb")
    def attention(name):
        for w in "qkvo":
            shapes[f"{name}.W_{w}"] = (D, D)
            if use_bias:
                shapes[f"{name}.b_{w}"] = (D,)
    def block(name, attentions, norms):
        for a in range(attentions):
            attention(f"{name}.att{a}")
        shapes.update({f"{name}.w1": (Fh, D), f"{name}.b1": (Fh,), f"{name}.w2": (D, Fh), f"{name}.b2": (D,)})
        for n in range(norms):
            shapes.update({f"{name}.ln{n}.g": (D,), f"{name}.ln{n}.b": (D,)})
    for i in range(num_blks):
        block(f"enc{i}", 1, 2)
        block(f"dec{i}", 2, 3)
    shapes["out.b"] = (tgt_vocab_size,)
    if not tie_weights:
        shapes["out.w"] = (tgt_vocab_size, D)
    total = 0
    for shape in shapes.values():
        size = 1
        for s in shape:
            size *= s
        total += size
    return total
''',
}

MORE_ALTERNATIVES = [
    {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):   # in float32, with torch.var_mean
    var, mean = torch.var_mean(X.float(), dim=-1, keepdim=True, correction=0)
    return (X.float() - mean) * torch.rsqrt(var + eps) * gamma.float() + beta.float()
'''},
    {"causal_attention_weights": '''
def causal_attention_weights(Q, K):   # in float32: the full Tk x Tk mask, its last Tq rows
    Tq, Tk = Q.shape[1], K.shape[1]
    full = torch.triu(torch.ones(Tk, Tk, dtype=torch.bool), diagonal=1)[Tk - Tq:]
    scores = torch.matmul(Q.float(), K.float().transpose(-1, -2)) / Q.shape[-1] ** 0.5
    return scores.masked_fill(full, float("-inf")).softmax(dim=-1)
'''},
    {"causal_attention_weights": '''
def causal_attention_weights(Q, K):   # course_lib.masked_softmax with a length per query, built here
    B, Tq, d = Q.shape
    Tk = K.shape[1]
    lens = torch.arange(Tk - Tq + 1, Tk + 1).expand(B, Tq)
    return course_lib.masked_softmax(Q @ K.transpose(1, 2) / math.sqrt(d), lens)
'''},
    {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):   # in float32, with course_lib.dot_product_attention
    x32 = x.float()
    k, v = (x32 @ W_k.float())[:, None], (x32 @ W_v.float())[:, None]
    K = k if cache is None else torch.cat([cache[0].float(), k], dim=1)
    V = v if cache is None else torch.cat([cache[1].float(), v], dim=1)
    out, _ = course_lib.dot_product_attention((x32 @ W_q.float())[:, None], K, V)
    return out[:, 0], (K, V)
'''},
    {"transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):   # in floating point, then an int
    D, F_ = float(num_hiddens), float(ffn_num_hiddens)
    attention = 4 * D * D + 4 * D * use_bias
    block = 3 * attention + 2 * (2 * D * F_ + F_ + D) + 5 * 2 * D
    total = D * (src_vocab_size + tgt_vocab_size * (not shared_embedding)) + num_blks * block + tgt_vocab_size * (D * (not tie_weights) + 1)
    return int(round(total))
'''},
]
