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
        ("upper triangle: the future kept, the past masked",
         {"causal_attention_weights": _causal(mask="torch.ones(Tq, Tk, dtype=torch.bool).triu(Tk - Tq)")},
         "mask the keys AFTER the query's position"),
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
        ("builds the model and counts", {"transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    with torch.device("meta"):
        model = course_lib.build_transformer(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                             num_blks, 0.0, use_bias=use_bias, tie_weights=tie_weights,
                                             shared_embedding=shared_embedding)
    return course_lib.count_parameters(model)
'''}, "write it yourself: do not call course_lib.build_transformer"),
    ],
}

TRIVIAL = {
    "q1": {"layer_norm": '''
def layer_norm(X, gamma, beta, eps=1e-5):
    return X
'''},
    "q2": {"causal_attention_weights": '''
def causal_attention_weights(Q, K):
    return torch.full((Q.shape[0], Q.shape[1], K.shape[1]), 1.0 / K.shape[1])
'''},
    "q3": {"attention_step": '''
def attention_step(x, W_q, W_k, W_v, cache=None):
    return x @ W_v, ((x @ W_k).unsqueeze(1), (x @ W_v).unsqueeze(1))
'''},
    "q4": {"transformer_parameter_count": '''
def transformer_parameter_count(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                num_blks, use_bias=False, tie_weights=False, shared_embedding=False):
    return 0
'''},
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
