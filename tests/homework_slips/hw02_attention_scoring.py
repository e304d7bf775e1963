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

SLIPS = {
    "q1": [
        ("fills masked scores with -10", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return torch.softmax(X.masked_fill(~mask, -10.0), dim=-1)
'''}, "a fill value such as -10 makes the padding win"),
        ("softmax over the queries (dim=1)", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return torch.softmax(X.masked_fill(~mask, torch.finfo(X.dtype).min), dim=1).masked_fill(~mask, 0.0)
'''}, "the softmax runs over the keys (the last axis)"),
        ("a row with valid_len 0 left uniform", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    B, Tq, Tk = X.shape
    lens = valid_lens if valid_lens.dim() == 2 else valid_lens.unsqueeze(1).expand(B, Tq)
    mask = torch.arange(Tk).view(1, 1, Tk) < lens.unsqueeze(-1)
    return torch.softmax(X.masked_fill(~mask, torch.finfo(X.dtype).min), dim=-1)
'''}, "a row with valid_len 0 must be all zeros"),
        ("calls course_lib.masked_softmax", {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):
    return course_lib.masked_softmax(X, valid_lens)
'''}, "write it yourself: do not call course_lib.masked_softmax"),
    ],
    "q2": [
        ("divides the scores by d instead of sqrt(d)", {"my_dot_product_attention": _MASKED_SOFTMAX + '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    weights = _masked_softmax(torch.bmm(Q, K.transpose(1, 2)) / Q.shape[-1], valid_lens)
    return torch.bmm(weights, V), weights
'''}, "scores must be divided by sqrt(d), not d"),
        ("divides by sqrt of the number of keys", {"my_dot_product_attention": _MASKED_SOFTMAX + '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    weights = _masked_softmax(torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(K.shape[1]), valid_lens)
    return torch.bmm(weights, V), weights
'''}, "not of the number of keys"),
        ("valid_lens not passed on: no mask", {"my_dot_product_attention": _MASKED_SOFTMAX + '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    weights = _masked_softmax(torch.bmm(Q, K.transpose(1, 2)) / math.sqrt(Q.shape[-1]), None)
    return torch.bmm(weights, V), weights
'''}, "keys at positions >= valid_len must get zero weight"),
        ("calls course_lib.dot_product_attention", {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    return course_lib.dot_product_attention(Q, K, V, valid_lens)
'''}, "write it yourself"),
    ],
    "q3": [
        ("keys not normalised", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.softmax(F.normalize(Q, dim=-1) @ K.transpose(1, 2) / tau, dim=-1)
'''}, "normalise the keys too"),
        ("multiplies by tau", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.softmax(F.normalize(Q, dim=-1) @ F.normalize(K, dim=-1).transpose(1, 2) * tau, dim=-1)
'''}, "divide the cosine by the temperature tau, do not multiply"),
        ("softmax over the queries", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.softmax(F.normalize(Q, dim=-1) @ F.normalize(K, dim=-1).transpose(1, 2) / tau, dim=1)
'''}, "not over the queries"),
        ("normalises over the positions", {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.softmax(F.normalize(Q, dim=1) @ F.normalize(K, dim=1).transpose(1, 2) / tau, dim=-1)
'''}, "not over the positions"),
    ],
    "q4": [
        ("0 ln 0 gives NaN", {"row_entropy": '''
def row_entropy(weights):
    return -(weights * torch.log(weights)).sum(dim=-1)
'''}, "0 ln 0 = 0"),
        ("minus sign forgotten", {"row_entropy": '''
def row_entropy(weights):
    return torch.special.xlogy(weights, weights).sum(dim=-1)
'''}, "mind the minus sign"),
        ("log2 instead of ln", {"row_entropy": '''
def row_entropy(weights):
    return -(weights * torch.log2(weights.clamp_min(1e-300))).sum(dim=-1)
'''}, "use the natural logarithm"),
        ("summed over the queries", {"row_entropy": '''
def row_entropy(weights):
    return -torch.special.xlogy(weights, weights).sum(dim=1)
'''}, "sum over the keys (the last axis)"),
    ],
}

TRIVIAL = {
    "q1": {"my_masked_softmax": '''
def my_masked_softmax(X, valid_lens):   # ignores the scores: uniform over the valid keys
    Tk = X.shape[-1]
    lens = torch.full(X.shape[:2], Tk) if valid_lens is None else (valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(X.shape[:2]))
    keep = (torch.arange(Tk) < lens[..., None]).float()
    return keep / keep.sum(-1, keepdim=True).clamp_min(1)
'''},
    "q2": {"my_dot_product_attention": '''
def my_dot_product_attention(Q, K, V, valid_lens=None):
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[-1]), torch.zeros(Q.shape[0], Q.shape[1], K.shape[1])
'''},
    "q3": {"cosine_attention_weights": '''
def cosine_attention_weights(Q, K, tau):
    return torch.full((Q.shape[0], Q.shape[1], K.shape[1]), 1.0 / K.shape[1])   # uniform weights
'''},
    "q4": {"row_entropy": '''
def row_entropy(weights):
    return torch.zeros(weights.shape[:2])
'''},
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
