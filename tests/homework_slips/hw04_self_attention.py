"""Homework 4 (self-attention): slips, trivial answers and alternative correct answers."""

# multihead_self_attention's slips split and merge the heads themselves, so that they do
# not depend on the heads_to_batch slip of the same round.
_HEADS = '''
def _split(Y, h):
    B, T, D = Y.shape
    return Y.reshape(B, T, h, D // h).permute(0, 2, 1, 3).reshape(B * h, T, D // h)


def _merge(Y, h):
    BH, T, Dh = Y.shape
    return Y.reshape(BH // h, h, T, Dh).permute(0, 2, 1, 3).reshape(BH // h, T, h * Dh)
'''


def _mhsa(scale="math.sqrt(D // num_heads)", lens="valid_lens.repeat_interleave(num_heads)", out="@ W_o", proj="X @ W",
          masked="torch.arange(T).view(1, 1, T) >= lens.view(-1, 1, 1)", dim="-1"):
    return _HEADS + f'''

def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    q, k, v = (_split({proj}, num_heads) for W in (W_q, W_k, W_v))
    scores = q @ k.transpose(1, 2) / {scale}
    if valid_lens is not None:
        lens = {lens}
        scores = scores.masked_fill({masked}, float("-inf"))
    return _merge(torch.softmax(scores, dim={dim}) @ v, num_heads) {out}
'''


def _h2b(body):
    return f'''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    return {body}
'''


def _b2h(body):
    return f'''
def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return {body}
'''


def _pe(freq="1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)", even="torch.sin(pos * freq)", odd="torch.cos(pos * freq)",
        pos="torch.arange(max_len, dtype=torch.float32).unsqueeze(1)"):
    return f'''
def sinusoidal_encoding(max_len, d):
    pos = {pos}
    freq = {freq}
    P = torch.zeros(max_len, d)
    P[:, 0::2] = {even}
    P[:, 1::2] = {odd}
    return P
'''


def _shift(angle="k / 10000 ** (2 * i / d)", block="[[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]"):
    return f'''
def shift_map(k, d):
    M = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        a = {angle}
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor({block})
    return M
'''


SLIPS = {
    "q1": [
        ("reshape without moving the head axis", {"heads_to_batch": _h2b("X.reshape(B * num_heads, T, D // num_heads)")},
         "a plain reshape mixes positions and heads"),
        ("head-major rows (i * B + b)", {"heads_to_batch": _h2b("X.reshape(B, T, num_heads, D // num_heads).permute(2, 0, 1, 3).reshape(B * num_heads, T, D // num_heads)")},
         "the batch comes first, then the head"),
        ("interleaved features per head", {"heads_to_batch": _h2b("X.reshape(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2).reshape(B * num_heads, T, D // num_heads)")},
         "contiguous features"),
        ("batch_to_heads without the permute back", {"batch_to_heads": _b2h("X.reshape(BH // num_heads, T, num_heads * Dh)")},
         "batch_to_heads must undo heads_to_batch"),
    ],
    "q2": [
        ("scaled by sqrt(D) instead of the head size", {"multihead_self_attention": _mhsa(scale="math.sqrt(D)")},
         "square root of the HEAD size"),
        ("valid_lens.repeat instead of repeat_interleave", {"multihead_self_attention": _mhsa(lens="valid_lens.repeat(num_heads)")},
         "repeat_interleave"),
        ("W_o forgotten", {"multihead_self_attention": _mhsa(out="")}, "multiply the merged heads by W_o"),
        ("calls course_lib.MultiHeadAttention's pieces", {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    q, k, v = (course_lib.transpose_qkv(X @ W, num_heads) for W in (W_q, W_k, W_v))
    out, _ = course_lib.dot_product_attention(q, k, v, None if valid_lens is None else valid_lens.repeat_interleave(num_heads))
    return course_lib.transpose_output(out, num_heads) @ W_o
'''}, "write it yourself: do not call course_lib.transpose_qkv"),
    ],
    "q3": [
        ("exponent i/d instead of 2i/d", {"sinusoidal_encoding": _pe(freq="1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / d)")},
         "the exponent is 2i/d"),
        ("sine and cosine swapped", {"sinusoidal_encoding": _pe(even="torch.cos(pos * freq)", odd="torch.sin(pos * freq)")},
         "column 2i holds the sine"),
        ("all sines, then all cosines", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)
'''}, "interleave"),
        ("calls course_lib.sinusoidal_encoding", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    return course_lib.sinusoidal_encoding(max_len, d)
'''}, "write it yourself: do not call course_lib.sinusoidal_encoding"),
    ],
    "q4": [
        ("signs of the sines swapped (M transposed)", {"shift_map": _shift(block="[[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]")},
         "check the signs of the sines"),
        ("one angle k for every pair", {"shift_map": _shift(angle="k")}, "its own angle k * omega_i"),
        ("exponent i/d", {"shift_map": _shift(angle="k / 10000 ** (i / d)")}, "the exponent is 2i/d"),
        ("calls course_lib.relative_position_map", {"shift_map": '''
def shift_map(k, d):
    return course_lib.relative_position_map(k, d)
'''}, "write it yourself: do not call course_lib.relative_position_map"),
    ],
}

MORE_SLIPS = {
    "q1": [
        ("heads cut from the wrong axis (B, h, T, D/h)", {"heads_to_batch": _h2b("X.reshape(B, num_heads, T, D // num_heads).reshape(B * num_heads, T, D // num_heads)")},
         "a plain reshape mixes positions and heads"),
        ("batch_to_heads reads the rows head-major", {"batch_to_heads": _b2h("X.reshape(num_heads, BH // num_heads, T, Dh).permute(1, 2, 0, 3).reshape(BH // num_heads, T, num_heads * Dh)")},
         "read the rows batch first, then head"),
        ("batch_to_heads puts the features back interleaved", {"batch_to_heads": _b2h("X.reshape(BH // num_heads, num_heads, T, Dh).permute(0, 2, 3, 1).reshape(BH // num_heads, T, num_heads * Dh)")},
         "back to the contiguous features"),
        ("heads_to_batch splits in place through a view", {"heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    out = X.reshape(B, T, num_heads, D // num_heads).permute(0, 2, 1, 3).reshape(B * num_heads, T, D // num_heads)
    X.zero_()
    return out
'''}, "changed its argument X"),
        ("course_lib.split_heads as a default argument", {"heads_to_batch": '''
def heads_to_batch(X, num_heads, split=course_lib.transpose_qkv):
    return split(X, num_heads)
'''}, "reached through heads_to_batch"),
        ("course_lib.transpose_output", {"batch_to_heads": '''
def batch_to_heads(X, num_heads):
    return course_lib.transpose_output(X, num_heads)
'''}, "do not call course_lib.transpose_output"),
    ],
    "q2": [
        ("PyTorch's private math attention, torch._scaled_dot_product_attention_math", {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    q, k, v = (heads_to_batch(X @ W, num_heads) for W in (W_q, W_k, W_v))
    mask = torch.zeros(B * num_heads, 1, T, dtype=X.dtype)
    if valid_lens is not None:
        mask = mask.masked_fill(torch.arange(T) >= valid_lens.repeat_interleave(num_heads).reshape(-1, 1, 1), float("-inf"))
    return batch_to_heads(torch._scaled_dot_product_attention_math(q, k, v, attn_mask=mask)[0], num_heads) @ W_o
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("scaled by sqrt(T)", {"multihead_self_attention": _mhsa(scale="math.sqrt(T)")}, "not of the sequence length"),
        ("no mask", {"multihead_self_attention": _mhsa(lens="valid_lens * 0 + T")}, "must get zero weight"),
        ("the queries masked instead of the keys", {"multihead_self_attention": _mhsa(masked="torch.arange(T).view(1, T, 1) >= lens.view(-1, 1, 1)")},
         "mask the KEYS"),
        ("X @ W.T, as nn.Linear", {"multihead_self_attention": _mhsa(proj="X @ W.T", out="@ W_o.T")}, "not X @ W.T"),
        ("softmax over the queries", {"multihead_self_attention": _mhsa(dim="1")}, "not over the queries"),
        ("PyTorch's fused attention", {"multihead_self_attention": _HEADS + '''

def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    q, k, v = (_split(X @ W, num_heads) for W in (W_q, W_k, W_v))
    mask = None if valid_lens is None else torch.arange(T).view(1, 1, T) < valid_lens.repeat_interleave(num_heads).view(-1, 1, 1)
    return _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), num_heads) @ W_o
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("torch.nn.MultiheadAttention with the weights copied in", {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    mha = torch.nn.MultiheadAttention(D, num_heads, bias=False, batch_first=True, dtype=X.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([W_q.T, W_k.T, W_v.T]))
        mha.out_proj.weight.copy_(W_o.T)
    mask = None if valid_lens is None else torch.arange(T)[None, :] >= valid_lens[:, None]
    return mha(X, X, X, key_padding_mask=mask, need_weights=False)[0]
'''}, "do not call torch.nn.MultiheadAttention"),
    ],
    "q3": [
        ("each column its own frequency", {"sinusoidal_encoding": _pe(odd="torch.cos(pos / 10000 ** (torch.arange(1, d, 2, dtype=torch.float32) / d))")},
         "share ONE frequency"),
        ("position times 10000^(2i/d)", {"sinusoidal_encoding": _pe(freq="10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)")},
         "do not multiply"),
        ("positions from 1", {"sinusoidal_encoding": _pe(pos="torch.arange(1, max_len + 1, dtype=torch.float32).unsqueeze(1)")},
         "positions start at 0"),
        ("the table transposed, (d, max_len)", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    P = torch.zeros(max_len, d, dtype=torch.float64)
    P[:, 0::2], P[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return P.T
'''}, "returned"),
        ("course_lib's PositionalEncoding module", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    return course_lib.PositionalEncoding(d, 0.0, max_len).P[0]
'''}, "do not call course_lib.PositionalEncoding"),
    ],
    "q4": [
        ("solved from P with NumPy's least squares", {"shift_map": '''
import numpy as np


def shift_map(k, d):
    P = sinusoidal_encoding(k + 2 * d, d).double().numpy()
    return torch.from_numpy(np.linalg.lstsq(P[:2 * d], P[k:k + 2 * d], rcond=None)[0])
'''}, "do not call numpy.linalg"),
        ("multiplies by 10000^(2i/d)", {"shift_map": _shift(angle="k * 10000 ** (2 * i / d)")}, "do not multiply"),
        ("turns by (k + 1) omega", {"shift_map": _shift(angle="(k + 1) / 10000 ** (2 * i / d)")}, "not (k + 1) * omega_i"),
        ("solved from P by least squares", {"shift_map": '''
def shift_map(k, d):
    P = sinusoidal_encoding(k + 2 * d, d).double()
    return torch.linalg.lstsq(P[:-k or None], P[k:]).solution
'''}, "do not call torch.linalg.lstsq"),
        ("solved from P with a pseudo-inverse", {"shift_map": '''
def shift_map(k, d):
    P = sinusoidal_encoding(k + 2 * d, d).double()
    return torch.linalg.pinv(P[:2 * d]) @ P[k:k + 2 * d]
'''}, "do not call torch.linalg.pinv"),
        ("the identity whatever k", {"shift_map": '''
def shift_map(k, d):
    return torch.eye(d, dtype=torch.float64)
'''}, "returned"),
    ],
}

TRIVIAL = {
    "q1": [
        {"heads_to_batch": _h2b("X.reshape(B * num_heads, T, D // num_heads)"), "batch_to_heads": _b2h("X.reshape(BH // num_heads, T, num_heads * Dh)")},
        {"heads_to_batch": _h2b("X.reshape(B, T, 4, D // 4).permute(0, 2, 1, 3).reshape(B * 4, T, D // 4)")},   # num_heads ignored
    ],
    "q2": [
        {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    return X @ W_v @ W_o
'''},
        {"multihead_self_attention": _mhsa(lens="valid_lens * 0 + T")},    # valid_lens ignored
        {"multihead_self_attention": _mhsa(scale="math.sqrt(D)")},          # one head's scale whatever num_heads
    ],
    "q3": [
        {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    return torch.zeros(max_len, d)
'''},
        {"sinusoidal_encoding": _pe(freq="1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / 4)")},   # d = 4 as in the example
    ],
    "q4": [
        {"shift_map": '''
def shift_map(k, d):
    return torch.eye(d)
'''},
        {"shift_map": _shift(angle="1 / 10000 ** (2 * i / d) if k else 0.0")},   # any shift treated as a shift by 1
    ],
}

ALTERNATIVES = {
    # with explicit loops over heads
    "heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    size = D // num_heads
    return torch.stack([X[b, :, i * size:(i + 1) * size] for b in range(B) for i in range(num_heads)])
''',
    "batch_to_heads": '''
def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return torch.cat([X[i::num_heads] for i in range(num_heads)], dim=-1)
''',
    # one head at a time, in float64, with a loop
    "multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    size = D // num_heads
    Q, K, V = (X.double() @ W.double() for W in (W_q, W_k, W_v))
    heads = []
    for i in range(num_heads):
        part = slice(i * size, (i + 1) * size)
        scores = Q[..., part] @ K[..., part].transpose(1, 2) / math.sqrt(size)
        if valid_lens is not None:
            scores = scores.masked_fill(torch.arange(T).view(1, 1, T) >= valid_lens.view(B, 1, 1), float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ V[..., part])
    return (torch.cat(heads, dim=-1) @ W_o.double()).to(X.dtype)
''',
    # position by position, with the frequencies as Python floats
    "sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    P = torch.zeros(max_len, d)
    for pos in range(max_len):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            P[pos, 2 * i], P[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return P
''',
    # block_diag of 2x2 rotations
    "shift_map": '''
def shift_map(k, d):
    blocks = []
    for i in range(d // 2):
        a = k * 10000 ** (-2 * i / d)
        c, s = math.cos(a), math.sin(a)
        blocks.append(torch.tensor([[c, -s], [s, c]], dtype=torch.float64))
    return torch.block_diag(*blocks)
''',
}

MORE_ALTERNATIVES = [
    {"heads_to_batch": '''
def heads_to_batch(X, num_heads):   # with view, transpose and flatten
    B, T, D = X.shape
    return X.view(B, T, num_heads, -1).transpose(1, 2).flatten(0, 1)
''', "batch_to_heads": '''
def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return X.view(-1, num_heads, T, Dh).transpose(1, 2).flatten(2)
'''},
    {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):   # in float32, with a -1e9 mask and einsum
    X32 = X.float()
    B, T, D = X.shape
    q, k, v = (heads_to_batch(X32 @ W.float(), num_heads) for W in (W_q, W_k, W_v))
    scores = torch.einsum("btd,bsd->bts", q, k) * (num_heads / D) ** 0.5
    if valid_lens is not None:
        keep = torch.arange(T)[None, None, :] < valid_lens.repeat_interleave(num_heads)[:, None, None]
        scores = torch.where(keep, scores, torch.tensor(-1e9))
    return batch_to_heads(scores.softmax(-1) @ v, num_heads) @ W_o.float()
'''},
    {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):   # in float32, angles as exp(-2i ln(10000) / d)
    pos = torch.arange(max_len).float()[:, None]
    omega = torch.exp(-torch.arange(0, d, 2).float() * math.log(10000.0) / d)
    return torch.stack([torch.sin(pos * omega), torch.cos(pos * omega)], dim=-1).flatten(1)
'''},
    {"shift_map": '''
def shift_map(k, d):   # in float32, the rotations placed with index arithmetic
    angle = k * torch.exp(-torch.arange(0, d, 2).float() * math.log(10000.0) / d)
    M = torch.zeros(d, d)
    even = torch.arange(0, d, 2)
    M[even, even] = torch.cos(angle)
    M[even + 1, even + 1] = torch.cos(angle)
    M[even, even + 1] = -torch.sin(angle)
    M[even + 1, even] = torch.sin(angle)
    return M
'''},
]
