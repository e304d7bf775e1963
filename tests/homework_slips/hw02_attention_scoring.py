"""Homework 2 (attention scoring): slips, trivial answers and alternative correct answers."""

# my_dot_product_attention's slips carry their own masked softmax, so that they do not
# depend on the masked-softmax slip of the same round.
_MASKED_SOFTMAX = '''
def _masked_softmax(scores, valid_lens):
    if valid_lens is None:
        return torch.softmax(scores, dim=-1)
    keep = torch.arange(scores.shape[-1]).view(1, 1, -1) < valid_lens.view(-1, 1, 1)
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
'''


def _ms(fill="torch.finfo(X.dtype).min", dim="-1", keep="torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)",
        lens="valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)", out="weights.masked_fill(~mask, 0.0)",
        none="torch.softmax(X, dim=-1)"):
    return f'''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return {none}
    B, Tq, Tk = X.shape
    lens = {lens}
    mask = {keep}
    weights = torch.softmax(X.masked_fill(~mask, {fill}), dim={dim})
    return {out}
'''


def _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(Q.shape[-1])", lens="valid_lens", out="torch.bmm(weights, V), weights"):
    return _MASKED_SOFTMAX + f'''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    weights = _masked_softmax({scores}, {lens})
    return {out}
'''


def _cos(q="F.normalize(Q, dim=-1)", k="F.normalize(K, dim=-1)", scores="cos / tau", dim="-1"):
    return f'''
def cosine_attention_weights(Q, K, tau):
    cos = {q} @ {k}.transpose(1, 2)
    return torch.softmax({scores}, dim={dim})
'''


def _entropy(body):
    return f'''
def row_entropy(weights):
    return {body}
'''


SLIPS = {
    "q1": [
        ("fills masked scores with -10", {"my_masked_softmax": _ms(fill="-10.0", out="weights")},
         "a fill value such as -10 makes the padding win"),
        ("softmax over the queries (dim=1)", {"my_masked_softmax": _ms(dim="1", none="torch.softmax(X, dim=1)")},
         "the softmax runs over the keys (the last axis)"),
        ("a row with valid_len 0 left uniform", {"my_masked_softmax": _ms(out="weights")}, "a row with valid_len 0 must be all zeros"),
        ("calls course_lib.masked_softmax", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    return course_lib.masked_softmax(X, valid_lens)
'''}, "write it yourself: do not call course_lib.masked_softmax"),
    ],
    "q2": [
        ("divides the scores by d instead of sqrt(d)", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / Q.shape[-1]")},
         "scores must be divided by sqrt(d), not d"),
        ("divides by sqrt of the number of keys", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(K.shape[1])")},
         "not of the number of keys"),
        ("valid_lens not passed on: no mask", {"my_dot_product_attention": _dpa(lens="None")}, "keys at positions >= valid_len must get zero weight"),
        ("calls course_lib.dot_product_attention", {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    return course_lib.dot_product_attention(Q, K, V, valid_lens)
'''}, "write it yourself"),
    ],
    "q3": [
        ("keys not normalised", {"cosine_attention_weights": _cos(k="K")}, "normalise the keys too"),
        ("multiplies by tau", {"cosine_attention_weights": _cos(scores="cos * tau")}, "divide the cosine by the temperature tau, do not multiply"),
        ("softmax over the queries", {"cosine_attention_weights": _cos(dim="1")}, "not over the queries"),
        ("normalises over the positions", {"cosine_attention_weights": _cos(q="F.normalize(Q, dim=1)", k="F.normalize(K, dim=1)")},
         "not over the positions"),
    ],
    "q4": [
        ("0 ln 0 gives NaN", {"row_entropy": _entropy("-(weights * torch.log(weights)).sum(dim=-1)")}, "0 ln 0 = 0"),
        ("minus sign forgotten", {"row_entropy": _entropy("torch.special.xlogy(weights, weights).sum(dim=-1)")}, "mind the minus sign"),
        ("log2 instead of ln", {"row_entropy": _entropy("-(weights * torch.log2(weights.clamp_min(1e-300))).sum(dim=-1)")},
         "use the natural logarithm"),
        ("summed over the queries", {"row_entropy": _entropy("-torch.special.xlogy(weights, weights).sum(dim=1)")},
         "sum over the keys (the last axis)"),
    ],
}

MORE_SLIPS = {
    "q1": [
        ("PyTorch's masked softmax, torch.masked.softmax", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return torch.masked.softmax(X, dim=-1, mask=mask).nan_to_num(0.0)
'''}, "do not call torch.masked"),
        ("a row with valid_len 0 gives NaN (-inf fill)", {"my_masked_softmax": _ms(fill='float("-inf")', out="weights")}, "not NaN"),
        ("the weights zeroed after the softmax", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    return torch.softmax(X, dim=-1) * (torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1))
'''}, "mask the scores BEFORE the softmax"),
        ("off by one: <= keeps one padding key", {"my_masked_softmax": _ms(keep="torch.arange(Tk).view(1, 1, Tk) <= lens.unsqueeze(-1)")},
         "not n + 1 keys"),
        ("lengths of shape (B, Tq) read as one per sequence", {"my_masked_softmax": _ms(lens="(valid_lens if valid_lens.dim() == 1 else valid_lens[:, 0]).unsqueeze(1).expand(B, Tq)")},
         "one length per query"),
        ("d2l's flattening with repeat instead of repeat_interleave", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens.repeat(Tq) if valid_lens.dim() == 1 else valid_lens.reshape(-1)
    flat = X.reshape(-1, Tk)
    mask = torch.arange(Tk).unsqueeze(0) < lens.unsqueeze(1)
    weights = torch.softmax(flat.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    return weights.reshape(B, Tq, Tk)
'''}, "repeat_interleave the lengths"),
        ("fills in place (changes X)", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    X.masked_fill_(~mask, float("-inf"))
    return torch.softmax(X, dim=-1).nan_to_num(0.0)
'''}, "changed its argument X"),
        ("PyTorch's attention with identity keys and values", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    B, Tq, Tk = X.shape
    eye = torch.eye(Tk, dtype=X.dtype).expand(B, Tk, Tk)
    lens = torch.full((B, Tq), Tk) if valid_lens is None else valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return F.scaled_dot_product_attention(X, eye, eye, attn_mask=mask, scale=1.0).nan_to_num(0.0)
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("course_lib.masked_softmax bound to a default argument", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens, softmax=course_lib.masked_softmax):
    return softmax(X, valid_lens)
'''}, "do not use course_lib.masked_softmax (nothing from course_lib is allowed here), reached through"),
    ],
    "q2": [
        ("no scaling", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2))")}, "scaled dot-product attention"),
        ("scaled by the constant 2 (sqrt of the example's d)", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / 2")},
         "returned"),
        ("multiplied by sqrt(d)", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) * math.sqrt(Q.shape[-1])")},
         "do not multiply"),
        ("divided by the square root of the value size", {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(V.shape[-1])")},
         "not of the values"),
        ("keys used as values", {"my_dot_product_attention": _dpa(out="torch.bmm(weights, K), weights")}, "not the keys"),
        ("the pair the other way round", {"my_dot_product_attention": _dpa(out="weights, torch.bmm(weights, V)")}, "(output, weights), in this order"),
        ("PyTorch's fused attention for the output", {"my_dot_product_attention": _MASKED_SOFTMAX + '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    weights = _masked_softmax(torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(Q.shape[-1]), valid_lens)
    mask = weights > 0
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), weights
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("torch.nn.MultiheadAttention with identity projections", {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    d = Q.shape[-1]
    mha = torch.nn.MultiheadAttention(d, 1, bias=False, batch_first=True, kdim=d, vdim=V.shape[-1], dtype=Q.dtype)
    with torch.no_grad():
        mha.q_proj_weight.copy_(torch.eye(d)); mha.k_proj_weight.copy_(torch.eye(d))
    mask = None if valid_lens is None else torch.arange(K.shape[1])[None, :] >= valid_lens[:, None]
    out, w = mha(Q, K, V, key_padding_mask=mask)
    return out, w
'''}, "do not call torch.nn.MultiheadAttention"),
    ],
    "q3": [
        ("queries not normalised", {"cosine_attention_weights": _cos(q="Q")}, "normalise the queries too"),
        ("neither normalised (a plain dot product)", {"cosine_attention_weights": _cos(q="Q", k="K")}, "normalise both"),
        ("tau ignored", {"cosine_attention_weights": _cos(scores="cos")}, "tau is ignored"),
        ("divided by the squared norms", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    dots = Q @ K.transpose(1, 2)
    norms = (Q * Q).sum(-1, keepdim=True) * (K * K).sum(-1).unsqueeze(1)
    return torch.softmax(dots / norms / tau, dim=-1)
'''}, "not by their squares"),
        ("cosine distance", {"cosine_attention_weights": _cos(scores="(1 - cos) / tau")}, "not 1 - cos"),
        ("sigmoid instead of softmax", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.sigmoid(F.normalize(Q, dim=-1) @ F.normalize(K, dim=-1).transpose(1, 2) / tau)
'''}, "not a sigmoid"),
    ],
    "q4": [
        ("log10", {"row_entropy": _entropy("-(weights * torch.log10(weights.clamp_min(1e-300))).sum(dim=-1)")}, "not log10"),
        ("the mean over the keys", {"row_entropy": _entropy("-torch.special.xlogy(weights, weights).mean(dim=-1)")}, "not their mean"),
        ("ln alpha without the alpha", {"row_entropy": _entropy("-torch.where(weights > 0, weights.log(), torch.zeros_like(weights)).sum(dim=-1)")},
         "weight each ln alpha by its alpha"),
        ("exp(H), the perplexity", {"row_entropy": _entropy("torch.exp(-torch.special.xlogy(weights, weights).sum(dim=-1))")}, "not exp(H)"),
        ("normalised by ln Tk", {"row_entropy": _entropy("-torch.special.xlogy(weights, weights).sum(dim=-1) / math.log(max(weights.shape[-1], 2))")},
         "not H / ln(Tk)"),
        ("zeros clamped in place", {"row_entropy": '''
def row_entropy(weights):
    weights.clamp_(min=1e-12)
    return -(weights * weights.log()).sum(dim=-1)
'''}, "changed its argument weights"),
    ],
}

TRIVIAL = {
    "q1": [
        {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):   # ignores the scores: uniform over the valid keys
    Tk = X.shape[-1]
    lens = torch.full(X.shape[:2], Tk) if valid_lens is None else (valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(X.shape[:2]))
    keep = (torch.arange(Tk) < lens[..., None]).float()
    return keep / keep.sum(-1, keepdim=True).clamp_min(1)
'''},
        {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):   # ignores valid_lens
    return torch.softmax(X, dim=-1)
'''},
    ],
    "q2": [
        {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[-1]), torch.zeros(Q.shape[0], Q.shape[1], K.shape[1])
'''},
        {"my_dot_product_attention": _dpa(scores="torch.bmm(Q, K.transpose(1, 2)) / 2")},    # the example's sqrt(d) as a constant
        {"my_dot_product_attention": _dpa(lens="None")},                                      # valid_lens ignored
    ],
    "q3": [
        {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.full((Q.shape[0], Q.shape[1], K.shape[1]), 1.0 / K.shape[1])   # uniform weights
'''},
        {"cosine_attention_weights": _cos(scores="cos / 0.5")},                           # tau ignored
    ],
    "q4": [
        {"row_entropy": _entropy("torch.zeros(weights.shape[:2])")},
        {"row_entropy": _entropy("torch.full(weights.shape[:2], math.log(weights.shape[-1]))")},   # ln Tk whatever the weights
    ],
}

ALTERNATIVES = {
    # -inf fill, then NaN rows (all keys masked) replaced by zeros; loops over the rows
    "my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    out = torch.zeros_like(X)
    for b in range(X.shape[0]):
        for q in range(X.shape[1]):
            n = int(valid_lens[b] if valid_lens.dim() == 1 else valid_lens[b, q])
            if n > 0:
                e = torch.exp(X[b, q, :n] - X[b, q, :n].max())
                out[b, q, :n] = e / e.sum()
    return out
''',
    # in float64 with einsum, then back to the input's type
    "my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    d = Q.shape[-1]
    scores = torch.einsum("bqd,bkd->bqk", Q.double(), K.double()) / d ** 0.5
    weights = my_masked_softmax(scores, valid_lens).to(Q.dtype)
    return torch.einsum("bqk,bkv->bqv", weights, V), weights
''',
    # norms by hand, with an epsilon
    "cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    Qn = Q / Q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    Kn = K / K.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return F.softmax(torch.einsum("bqd,bkd->bqk", Qn, Kn) / tau, dim=-1)
''',
    # masks the zeros instead of xlogy
    "row_entropy": '''
def row_entropy(weights):
    terms = torch.where(weights > 0, weights * torch.log(weights.clamp_min(1e-300)), torch.zeros_like(weights))
    return -terms.sum(dim=-1)
''',
}

MORE_ALTERNATIVES = [
    {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):   # in float32, -1e9 fill and the empty rows zeroed by a multiplication
    X32 = X.float()
    B, Tq, Tk = X.shape
    lens = torch.full((B, Tq), Tk) if valid_lens is None else valid_lens.reshape(B, -1).expand(B, Tq)
    keep = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return torch.softmax(torch.where(keep, X32, torch.tensor(-1e9)), dim=-1) * keep
'''},
    {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):   # in float32, scale applied to the queries
    q = Q.float() / Q.shape[-1] ** 0.5
    w = my_masked_softmax(q @ K.float().transpose(-2, -1), valid_lens)
    return w @ V.float(), w
'''},
    {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):   # in float32, with cosine_similarity and broadcasting
    cos = F.cosine_similarity(Q.float().unsqueeze(2), K.float().unsqueeze(1), dim=-1)
    return torch.softmax(cos / tau, dim=-1)
'''},
    {"row_entropy": '''
def row_entropy(weights):   # in float32, ln of the clamped weights
    w = weights.float()
    return -(w * w.clamp_min(1e-30).log()).sum(-1)
'''},
]
