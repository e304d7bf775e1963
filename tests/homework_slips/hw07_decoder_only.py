"""Homework 7 (decoder-only models): slips, trivial answers and alternative correct answers."""


# apply_rotary's slips differ from a correct answer in one place each.
def _rotary(theta="base ** (-2 * torch.arange(d // 2, dtype=torch.float64) / d)", p="positions.double()",
            even="X[..., 0::2]", odd="X[..., 1::2]", first="even * cos - odd * sin", second="even * sin + odd * cos",
            join="torch.stack([a, b], dim=-1).reshape(X.shape)"):
    return f'''
def apply_rotary(X, positions, base=10000.0):
    d = X.shape[-1]
    theta = {theta}
    angle = {p}.unsqueeze(-1) * theta
    cos, sin = angle.cos().to(X.dtype), angle.sin().to(X.dtype)
    even, odd = {even}, {odd}
    a = {first}
    b = {second}
    return {join}
'''


_HALVES = dict(even="X[..., : d // 2]", odd="X[..., d // 2:]", join="torch.cat([a, b], dim=-1)")


def _merge(m="torch.maximum(m1, m2)", a1="torch.exp(m1 - m)", a2="torch.exp(m2 - m)", l="w1 + w2",
           o="(w1.unsqueeze(-1) * o1 + w2.unsqueeze(-1) * o2) / l.unsqueeze(-1)"):
    return f'''
def merge_blocks(m1, l1, o1, m2, l2, o2):
    m = {m}
    a1, a2 = {a1}, {a2}
    w1, w2 = a1 * l1, a2 * l2
    l = {l}
    o = {o}
    return m, l, o
'''


def _gqa(expand="K.repeat_interleave(G, dim=1), V.repeat_interleave(G, dim=1)", scale="math.sqrt(Q.shape[-1])",
         mask="j > i", offset="Tk - Tq", dim="-1"):
    return f'''
def grouped_query_attention(Q, K, V, causal=False):
    G = Q.shape[1] // K.shape[1]
    K, V = {expand}
    Tq, Tk = Q.shape[2], K.shape[2]
    scores = Q @ K.transpose(-1, -2) / {scale}
    if causal:
        i = torch.arange(Tq).unsqueeze(1) + {offset}
        j = torch.arange(Tk).unsqueeze(0)
        scores = scores.masked_fill({mask}, float("-inf"))
    return torch.softmax(scores, dim={dim}) @ V
'''


def _top_p(descending="True", keep="before < p", norm="kept / kept.sum(dim=-1, keepdim=True)", answer="order.gather(-1, k.unsqueeze(-1)).squeeze(-1)",
           probs="torch.softmax(logits.double(), dim=-1)"):
    return f'''
def top_p_sample(logits, p, u):
    probs = {probs}
    sorted_probs, order = torch.sort(probs, dim=-1, descending={descending})
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = torch.where({keep}, sorted_probs, torch.zeros_like(sorted_probs))
    q = {norm}
    k = (q.cumsum(dim=-1) <= u.double().unsqueeze(-1)).sum(dim=-1)
    k = torch.minimum(k, (kept > 0).sum(dim=-1) - 1)
    return {answer}
'''


SLIPS = {
    "q1": [
        ("feature i paired with feature i + d/2 (the halves convention)", {"apply_rotary": _rotary(**_HALVES)},
         "pair NEIGHBOURING features"),
        ("the rotation turned the other way", {"apply_rotary": _rotary(first="even * cos + odd * sin", second="-even * sin + odd * cos")},
         "your sines have the wrong sign"),
        ("theta_i = base^(-i/d)", {"apply_rotary": _rotary(theta="base ** (-torch.arange(d // 2, dtype=torch.float64) / d)")},
         "the exponent is 2i/d, not i/d"),
        ("row t rotated by t, the positions ignored", {"apply_rotary": _rotary(p="torch.arange(X.shape[-2], dtype=torch.float64)")},
         "use the positions given"),
    ],
    "q2": [
        ("the sums added without rescaling", {"merge_blocks": _merge(a1="torch.ones_like(m1)", a2="torch.ones_like(m2)")},
         "rescale each block's sum to the common maximum"),
        ("the merged output not divided by l", {"merge_blocks": _merge(o="w1.unsqueeze(-1) * o1 + w2.unsqueeze(-1) * o2")},
         "divide the merged output by the merged sum l"),
        ("exp of the maxima themselves (overflows)", {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):
    e1, e2 = torch.exp(m1) * l1, torch.exp(m2) * l2
    m = torch.maximum(m1, m2)
    return m, (e1 + e2) / torch.exp(m), (e1.unsqueeze(-1) * o1 + e2.unsqueeze(-1) * o2) / (e1 + e2).unsqueeze(-1)
'''}, "subtract the common maximum before exp"),
        ("the outputs weighted by exp(m_b - m) alone", {"merge_blocks": _merge(o="(a1.unsqueeze(-1) * o1 + a2.unsqueeze(-1) * o2) / (a1 + a2).unsqueeze(-1)")},
         "weight each block's output by its whole rescaled sum"),
    ],
    "q3": [
        ("key/value heads cycled (repeat) instead of grouped (repeat_interleave)",
         {"grouped_query_attention": _gqa(expand="K.repeat(1, G, 1, 1), V.repeat(1, G, 1, 1)")}, "CONSECUTIVE query heads"),
        ("the causal mask aligned at the first position", {"grouped_query_attention": _gqa(offset="0")},
         "the queries are the LAST Tq positions"),
        ("no 1/sqrt(d)", {"grouped_query_attention": _gqa(scale="1.0")}, "divide the scores by sqrt(d)"),
    ],
    "q4": [
        ("the token that crosses p left out", {"top_p_sample": _top_p(keep="(sorted_probs.cumsum(dim=-1) <= p) | (before == 0)")},
         "keep the token that crosses p"),
        ("no renormalization", {"top_p_sample": _top_p(norm="kept")}, "renormalize the kept probabilities"),
        ("the rank in the sorted order returned", {"top_p_sample": _top_p(answer="k")}, "return the token's id"),
    ],
}

MORE_SLIPS = {
    "q1": [
        ("theta_i = base^(+2i/d)", {"apply_rotary": _rotary(theta="base ** (2 * torch.arange(d // 2, dtype=torch.float64) / d)")},
         "with a minus sign"),
        ("the frequencies in reverse order", {"apply_rotary": _rotary(theta="base ** (-2 * torch.arange(d // 2, dtype=torch.float64).flip(0) / d)")},
         "you have them in reverse order"),
    ],
    "q2": [
        ("the factor exp(m - m_b)", {"merge_blocks": _merge(a1="torch.exp(m - m1)", a2="torch.exp(m - m2)")}, "at most 1, not exp(m - m1)"),
        ("the first block's maximum kept", {"merge_blocks": _merge(m="m1")}, "the larger of m1 and m2"),
        ("the plain average of the outputs", {"merge_blocks": _merge(o="(o1 + o2) / 2")}, "not the plain average of o1 and o2"),
    ],
    "q3": [
        ("the diagonal masked too", {"grouped_query_attention": _gqa(mask="j >= i")}, "attends to its own position too"),
        ("softmax over the queries", {"grouped_query_attention": _gqa(dim="-2")}, "the softmax runs over the keys"),
        ("divided by sqrt(dv)", {"grouped_query_attention": _gqa(scale="math.sqrt(V.shape[-1])")}, "not of the values"),
    ],
    "q4": [
        ("sorted by increasing probability", {"top_p_sample": _top_p(descending="False")}, "sort the tokens by DEcreasing probability"),
        ("the cumulative sum in the order of the token ids", {"top_p_sample": '''
def top_p_sample(logits, p, u):
    probs = torch.softmax(logits.double(), dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    kept_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < p
    kept = torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)   # back in the order of the ids
    q = torch.where(kept, probs, torch.zeros_like(probs))
    q = q / q.sum(dim=-1, keepdim=True)
    k = (q.cumsum(dim=-1) <= u.double().unsqueeze(-1)).sum(dim=-1)
    last = kept.long().cumsum(dim=-1).argmax(dim=-1)
    return torch.minimum(k, last)
'''}, "not in the order of the token ids"),
    ],
}

TRIVIAL = {
    "q1": [
        {"apply_rotary": '''
def apply_rotary(X, positions, base=10000.0):
    return X.clone()
'''},
        {"apply_rotary": _rotary(p="torch.arange(X.shape[-2], dtype=torch.float64)")},          # positions ignored
        {"apply_rotary": _rotary(theta="10000.0 ** (-2 * torch.arange(d // 2, dtype=torch.float64) / d)")},   # base ignored
    ],
    "q2": [
        {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):
    return m1, l1, o1
'''},
        {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):
    return torch.maximum(m1, m2), l1 + l2, (o1 + o2) / 2
'''},
        {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):
    return torch.zeros_like(m1), torch.ones_like(l1), torch.zeros_like(o1)
'''},
    ],
    "q3": [
        {"grouped_query_attention": '''
def grouped_query_attention(Q, K, V, causal=False):
    return torch.zeros(Q.shape[0], Q.shape[1], Q.shape[2], V.shape[-1])
'''},
        {"grouped_query_attention": '''
def grouped_query_attention(Q, K, V, causal=False):   # causal ignored
    G = Q.shape[1] // K.shape[1]
    K, V = K.repeat_interleave(G, dim=1), V.repeat_interleave(G, dim=1)
    return torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(Q.shape[-1]), dim=-1) @ V
'''},
    ],
    "q4": [
        {"top_p_sample": '''
def top_p_sample(logits, p, u):
    return logits.argmax(dim=-1)
'''},
        {"top_p_sample": _top_p(keep="before < 2.0")},                                         # p ignored: all tokens kept
        {"top_p_sample": '''
def top_p_sample(logits, p, u):
    return torch.zeros(logits.shape[0], dtype=torch.long)
'''},
    ],
}

ALTERNATIVES = {
    "apply_rotary": '''
def apply_rotary(X, positions, base=10000.0):   # inverse frequencies 1 / base^(2i/d), the pairs as a trailing axis of size 2
    d = X.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    angle = torch.outer(positions.double(), inv_freq)                # (T, d/2)
    pairs = X.double().reshape(*X.shape[:-1], d // 2, 2)
    x, y = pairs[..., 0], pairs[..., 1]
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([x * c - y * s, x * s + y * c], dim=-1).reshape(X.shape).to(X.dtype)
''',
    "merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):   # the second block's share as 1 - the first's
    m = torch.where(m1 > m2, m1, m2)
    w1, w2 = l1 * torch.exp(m1 - m), l2 * torch.exp(m2 - m)
    l = w1 + w2
    share = (w1 / l).unsqueeze(1)
    return m, l, share * o1 + (1 - share) * o2
''',
    "grouped_query_attention": '''
def grouped_query_attention(Q, K, V, causal=False):   # the query heads of a group as an axis of their own, einsum
    B, Hq, Tq, d = Q.shape
    Hkv, Tk = K.shape[1], K.shape[2]
    q = Q.reshape(B, Hkv, Hq // Hkv, Tq, d)
    scores = torch.einsum("bhgqd,bhkd->bhgqk", q, K) / d ** 0.5
    if causal:
        visible = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
        scores = scores.masked_fill(~visible, float("-inf"))
    out = torch.einsum("bhgqk,bhke->bhgqe", scores.softmax(dim=-1), V)
    return out.reshape(B, Hq, Tq, V.shape[-1])
''',
    "top_p_sample": '''
def top_p_sample(logits, p, u):   # one row at a time, in Python
    out = []
    for row, x in zip(torch.softmax(logits.double(), dim=-1), u.tolist()):
        order = torch.argsort(row, descending=True).tolist()
        kept, total = [], 0.0
        for t in order:
            kept.append(t)
            total += float(row[t])
            if total >= p:
                break
        choice, c = kept[-1], 0.0
        for t in kept:
            c += float(row[t]) / total
            if c > x:
                choice = t
                break
        out.append(choice)
    return torch.tensor(out)
''',
}

MORE_ALTERNATIVES = [
    {"apply_rotary": '''
def apply_rotary(X, positions, base=10000.0):   # in float32, the rotation as a 2 x 2 matrix per pair
    d = X.shape[-1]
    theta = base ** (-2 * torch.arange(d // 2, dtype=torch.float32) / d)
    angle = positions.float().unsqueeze(-1) * theta                  # (T, d/2)
    c, s = angle.cos(), angle.sin()
    R = torch.stack([torch.stack([c, -s], dim=-1), torch.stack([s, c], dim=-1)], dim=-2)   # (T, d/2, 2, 2)
    pairs = X.float().reshape(*X.shape[:-1], d // 2, 2, 1)
    return (R @ pairs).reshape(X.shape).to(X.dtype)
'''},
    {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):   # in float32
    dtype = o1.dtype
    m1, l1, o1, m2, l2, o2 = (t.float() for t in (m1, l1, o1, m2, l2, o2))
    m = torch.max(torch.stack([m1, m2]), dim=0).values
    w1, w2 = l1 * (m1 - m).exp(), l2 * (m2 - m).exp()
    l = w1 + w2
    o = (w1[:, None] * o1 + w2[:, None] * o2) / l[:, None]
    return m.to(dtype), l.to(dtype), o.to(dtype)
'''},
    {"merge_blocks": '''
def merge_blocks(m1, l1, o1, m2, l2, o2):   # one query at a time, in Python floats
    import math
    ms, ls, os_ = [], [], []
    for n in range(len(m1)):
        a, b = float(m1[n]), float(m2[n])
        m = max(a, b)
        w1 = float(l1[n]) * math.exp(a - m) if a != float("-inf") else 0.0
        w2 = float(l2[n]) * math.exp(b - m) if b != float("-inf") else 0.0
        ms.append(m)
        ls.append(w1 + w2)
        os_.append((w1 * o1[n].double() + w2 * o2[n].double()) / (w1 + w2))
    return torch.tensor(ms), torch.tensor(ls), torch.stack(os_)
'''},
    {"grouped_query_attention": '''
def grouped_query_attention(Q, K, V, causal=False):   # in float32, heads by a loop, the mask added as -inf
    Hq, Hkv = Q.shape[1], K.shape[1]
    Tq, Tk = Q.shape[2], K.shape[2]
    bias = torch.zeros(Tq, Tk)
    if causal:
        bias = torch.triu(torch.full((Tq, Tk), float("-inf")), diagonal=Tk - Tq + 1)
    heads = []
    for h in range(Hq):
        k, v = K[:, h * Hkv // Hq].float(), V[:, h * Hkv // Hq].float()
        w = torch.softmax(Q[:, h].float() @ k.transpose(1, 2) / Q.shape[-1] ** 0.5 + bias, dim=-1)
        heads.append(w @ v)
    return torch.stack(heads, dim=1).to(Q.dtype)
'''},
    {"top_p_sample": '''
def top_p_sample(logits, p, u):   # in float32, with searchsorted
    probs = torch.softmax(logits.float(), dim=-1)
    s, order = probs.sort(dim=-1, descending=True)
    keep = (s.cumsum(dim=-1) - s) < p
    s = s * keep
    c = (s / s.sum(dim=-1, keepdim=True)).cumsum(dim=-1)
    k = torch.searchsorted(c, u.float().unsqueeze(-1), right=True).clamp(max=keep.sum(dim=-1, keepdim=True) - 1)
    return order.gather(-1, k).squeeze(-1)
'''},
]
