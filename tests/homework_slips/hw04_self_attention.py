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


def _mhsa(scale="math.sqrt(D // num_heads)", lens="valid_lens.repeat_interleave(num_heads)", out="@ W_o"):
    return _HEADS + f'''

def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, T, D = X.shape
    q, k, v = (_split(X @ W, num_heads) for W in (W_q, W_k, W_v))
    scores = q @ k.transpose(1, 2) / {scale}
    if valid_lens is not None:
        lens = {lens}
        scores = scores.masked_fill(torch.arange(T).view(1, 1, T) >= lens.view(-1, 1, 1), float("-inf"))
    return _merge(torch.softmax(scores, dim=-1) @ v, num_heads) {out}
'''


_B2H = '''

def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return X.reshape(BH // num_heads, num_heads, T, Dh).permute(0, 2, 1, 3).reshape(BH // num_heads, T, num_heads * Dh)
'''

SLIPS = {
    "q1": [
        ("reshape without moving the head axis", {"heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    return X.reshape(B * num_heads, T, D // num_heads)
'''}, "a plain reshape mixes positions and heads"),
        ("head-major rows (i * B + b)", {"heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    return X.reshape(B, T, num_heads, D // num_heads).permute(2, 0, 1, 3).reshape(B * num_heads, T, D // num_heads)
'''}, "the batch comes first, then the head"),
        ("interleaved features per head", {"heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    return X.reshape(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2).reshape(B * num_heads, T, D // num_heads)
'''}, "contiguous features"),
        ("batch_to_heads without the permute back", {"batch_to_heads": '''
def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return X.reshape(BH // num_heads, T, num_heads * Dh)
'''}, "batch_to_heads must undo heads_to_batch"),
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
        ("exponent i/d instead of 2i/d", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / d)
    P = torch.zeros(max_len, d)
    P[:, 0::2] = torch.sin(pos * freq)
    P[:, 1::2] = torch.cos(pos * freq)
    return P
'''}, "the exponent is 2i/d"),
        ("sine and cosine swapped", {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    P = torch.zeros(max_len, d)
    P[:, 0::2] = torch.cos(pos * freq)
    P[:, 1::2] = torch.sin(pos * freq)
    return P
'''}, "column 2i holds the sine"),
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
        ("signs of the sines swapped (M transposed)", {"shift_map": '''
def shift_map(k, d):
    M = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        a = k / 10000 ** (2 * i / d)
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return M
'''}, "check the signs of the sines"),
        ("one angle k for every pair", {"shift_map": '''
def shift_map(k, d):
    M = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(k), -math.sin(k)], [math.sin(k), math.cos(k)]])
    return M
'''}, "its own angle k * omega_i"),
        ("exponent i/d", {"shift_map": '''
def shift_map(k, d):
    M = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        a = k / 10000 ** (i / d)
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return M
'''}, "the exponent is 2i/d"),
        ("calls course_lib.relative_position_map", {"shift_map": '''
def shift_map(k, d):
    return course_lib.relative_position_map(k, d)
'''}, "write it yourself: do not call course_lib.relative_position_map"),
    ],
}

TRIVIAL = {
    "q1": {"heads_to_batch": '''
def heads_to_batch(X, num_heads):
    B, T, D = X.shape
    return X.reshape(B * num_heads, T, D // num_heads)
''', "batch_to_heads": '''
def batch_to_heads(X, num_heads):
    BH, T, Dh = X.shape
    return X.reshape(BH // num_heads, T, num_heads * Dh)
'''},
    "q2": {"multihead_self_attention": '''
def multihead_self_attention(X, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    return X @ W_v @ W_o
'''},
    "q3": {"sinusoidal_encoding": '''
def sinusoidal_encoding(max_len, d):
    return torch.zeros(max_len, d)
'''},
    "q4": {"shift_map": '''
def shift_map(k, d):
    return torch.eye(d)
'''},
}

ALTERNATIVES = {
    # with einops-like explicit loops over heads
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
