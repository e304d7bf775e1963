"""Homework 3 (sequence to sequence): slips, trivial answers and alternative correct answers."""

SLIPS = {
    "q1": [
        ("scores not scaled", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    weights = course_lib.masked_softmax(torch.bmm(query, enc_outputs.transpose(1, 2)), valid_lens)
    return torch.bmm(weights, enc_outputs), weights
'''}, "divides the scores by sqrt(H)"),
        ("divided by H instead of sqrt(H)", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    weights = course_lib.masked_softmax(torch.bmm(query, enc_outputs.transpose(1, 2)) / query.shape[-1], valid_lens)
    return torch.bmm(weights, enc_outputs), weights
'''}, "divided by sqrt(H), not H"),
        ("padding not masked", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    weights = torch.softmax(torch.bmm(query, enc_outputs.transpose(1, 2)) / math.sqrt(query.shape[-1]), dim=-1)
    return torch.bmm(weights, enc_outputs), weights
'''}, "padded source positions"),
        ("calls course_lib.DotProductAttention", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    attention = course_lib.DotProductAttention(0.0)
    return attention(query, enc_outputs, enc_outputs, valid_lens), attention.attention_weights
'''}, "write it yourself: do not call course_lib.DotProductAttention"),
    ],
    "q2": [
        ("ranks by the token's log-probability alone", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    best = log_probs.flatten().topk(k)
    V = log_probs.shape[1]
    return [(int(i) // V, int(i) % V, float(beam_scores[int(i) // V] + s)) for s, i in zip(best.values, best.indices)]
'''}, "not by the token's log-probability alone"),
        ("keeps the k smallest totals", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    best = (beam_scores.unsqueeze(1) + log_probs).flatten().topk(k, largest=False)
    V = log_probs.shape[1]
    return [(int(i) // V, int(i) % V, float(s)) for s, i in zip(best.values, best.indices)]
'''}, "keep the k LARGEST totals"),
        ("flat index decoded with n instead of V", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    best = (beam_scores.unsqueeze(1) + log_probs).flatten().topk(k)
    n = log_probs.shape[0]
    return [(int(i) // n, int(i) % n, float(s)) for s, i in zip(best.values, best.indices)]
'''}, "beam = index // V"),
    ],
    "q3": [
        ("<eos> not counted in L", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return max(candidates, key=lambda c: normalized_score(c[1], len(c[0]), alpha))[0]
'''}, "L counts the <eos>"),
        ("multiplies by L ** alpha", {"normalized_score": '''
def normalized_score(total_logprob, length, alpha):
    return total_logprob * length ** alpha
'''}, "do not multiply"),
        ("picks the lowest score", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return min(candidates, key=lambda c: normalized_score(c[1], len(c[0]) + 1, alpha))[0]
'''}, "HIGHEST normalized score"),
        ("L * alpha instead of L ** alpha", {"normalized_score": '''
def normalized_score(total_logprob, length, alpha):
    return total_logprob / (length * alpha) if alpha else total_logprob
'''}, "not L * alpha"),
    ],
}

TRIVIAL = {
    "q1": {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):   # uniform weights over the whole source
    weights = torch.full((query.shape[0], 1, enc_outputs.shape[1]), 1.0 / enc_outputs.shape[1])
    return torch.bmm(weights, enc_outputs), weights
'''},
    "q2": {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    return [(0, 0, 0.0)] * k
'''},
    "q3": {"normalized_score": '''
def normalized_score(total_logprob, length, alpha):
    return total_logprob
''', "best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[0][0]
'''},
}

ALTERNATIVES = {
    # the mask by hand with -inf, in float64
    "dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    q, enc = query.double(), enc_outputs.double()
    scores = (q * enc).sum(dim=-1, keepdim=True).transpose(1, 2) / enc.shape[-1] ** 0.5     # (B, 1, Ts)
    padding = torch.arange(enc.shape[1]).view(1, 1, -1) >= valid_lens.view(-1, 1, 1)
    weights = torch.softmax(scores.masked_fill(padding, float("-inf")), dim=-1)
    return (weights @ enc).to(query.dtype), weights.to(query.dtype)
''',
    # plain Python: every extension, sorted
    "beam_step": '''
def beam_step(beam_scores, log_probs, k):
    n, V = log_probs.shape
    extensions = [(float(beam_scores[i]) + float(log_probs[i, v]), i, v) for i in range(n) for v in range(V)]
    extensions.sort(key=lambda e: e[0], reverse=True)
    return [(i, v, s) for s, i, v in extensions[:k]]
''',
    "normalized_score": '''
def normalized_score(total_logprob, length, alpha):
    return total_logprob * math.exp(-alpha * math.log(length))
''',
    "best_candidate": '''
def best_candidate(candidates, alpha):
    scored = [(normalized_score(logprob, len(tokens) + 1, alpha), i) for i, (tokens, logprob) in enumerate(candidates)]
    return candidates[max(scored)[1]][0]
''',
}
