"""Homework 3 (sequence to sequence): slips, trivial answers and alternative correct answers."""


def _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) / math.sqrt(query.shape[-1])", lens="valid_lens",
             out="torch.bmm(weights, enc_outputs), weights"):
    return f'''
def dot_product_context(query, enc_outputs, valid_lens):
    weights = course_lib.masked_softmax({scores}, {lens})
    return {out}
'''


def _beam(totals="beam_scores.unsqueeze(1) + log_probs", largest="True", V="log_probs.shape[1]",
          out="(int(i) // V, int(i) % V, float(s))"):
    return f'''
def beam_step(beam_scores, log_probs, k):
    best = ({totals}).flatten().topk(k, largest={largest})
    V = {V}
    return [{out} for s, i in zip(best.values, best.indices)]
'''


def _best(key="normalized_score(c[1], len(c[0]) + 1, alpha)", pick="max", out="[0]"):
    return f'''
def best_candidate(candidates, alpha):
    return {pick}(candidates, key=lambda c: {key}){out}
'''


def _score(body):
    return f'''
def normalized_score(total_logprob, length, alpha):
    return {body}
'''


SLIPS = {
    "q1": [
        ("scores not scaled", {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2))")},
         "divides the scores by sqrt(H)"),
        ("divided by H instead of sqrt(H)", {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) / query.shape[-1]")},
         "divided by sqrt(H), not H"),
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
        ("keeps the k smallest totals", {"beam_step": _beam(largest="False")}, "keep the k LARGEST totals"),
        ("flat index decoded with n instead of V", {"beam_step": _beam(V="log_probs.shape[0]")}, "beam = index // V"),
        ("each beam's best token only", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    best, tokens = log_probs.max(dim=1)
    totals = beam_scores + best
    order = totals.argsort(descending=True)[:k]
    return [(int(i), int(tokens[i]), float(totals[i])) for i in order]
'''}, "consider EVERY token of every beam"),
    ],
    "q3": [
        ("<eos> not counted in L", {"best_candidate": _best(key="normalized_score(c[1], len(c[0]), alpha)")}, "L counts the <eos>"),
        ("<bos> counted too", {"best_candidate": _best(key="normalized_score(c[1], len(c[0]) + 2, alpha)")}, "but not <bos>"),
        ("picks the lowest score", {"best_candidate": _best(pick="min")}, "HIGHEST normalized score"),
        ("always the last candidate", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[-1][0]
'''}, "not always the last of the list"),
    ],
}

MORE_SLIPS = {
    "q1": [
        ("multiplied by sqrt(H)", {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) * math.sqrt(query.shape[-1])")},
         "do not multiply"),
        ("divided by the square root of the source length", {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) / math.sqrt(enc_outputs.shape[1])")},
         "not of the source length"),
        ("off by one: one padding position kept", {"dot_product_context": _context(lens="valid_lens + 1")}, "position n is padding"),
        ("the pair the other way round", {"dot_product_context": _context(out="weights, torch.bmm(weights, enc_outputs)")},
         "(context, weights), in this order"),
        ("scaled by the constant 2 (sqrt of the example's H)", {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) / 2")},
         "returned"),
        ("course_lib.dot_product_attention", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    return course_lib.dot_product_attention(query, enc_outputs, enc_outputs, valid_lens)
'''}, "do not call course_lib.dot_product_attention"),
        ("PyTorch's fused attention, weights from the allowed masked softmax", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):
    weights = course_lib.masked_softmax(query @ enc_outputs.transpose(1, 2) / math.sqrt(query.shape[-1]), valid_lens)
    return F.scaled_dot_product_attention(query, enc_outputs, enc_outputs, attn_mask=weights > 0), weights
'''}, "do not call torch.nn.functional.scaled_dot_product_attention"),
        ("the decoder's additive attention module", {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens, attention=course_lib.DotProductAttention(0.0)):
    return attention(query, enc_outputs, enc_outputs, valid_lens), attention.attention_weights
'''}, "reached through dot_product_context"),
    ],
    "q2": [
        ("best k, but worst first", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    best = (beam_scores.unsqueeze(1) + log_probs).flatten().topk(k)
    V = log_probs.shape[1]
    return [(int(i) // V, int(i) % V, float(s)) for s, i in zip(best.values.flip(0), best.indices.flip(0))]
'''}, "BEST first"),
        ("the new score is the token's log-probability", {"beam_step": _beam(out="(int(i) // V, int(i) % V, float(log_probs.flatten()[i]))")},
         "not the token's log-probability"),
        ("(token, beam, score)", {"beam_step": _beam(out="(int(i) % V, int(i) // V, float(s))")}, "(beam index, token, new score), in this order"),
        ("tensors returned, not Python numbers", {"beam_step": _beam(out="(i // V, i % V, s)")}, "return Python int, int, float"),
        ("the beam scores added in place", {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    log_probs += beam_scores.unsqueeze(1)
    best = log_probs.flatten().topk(k)
    V = log_probs.shape[1]
    return [(int(i) // V, int(i) % V, float(s)) for s, i in zip(best.values, best.indices)]
'''}, "changed its argument log_probs"),
        ("the k best of beam 0 only", {"beam_step": _beam(totals="beam_scores[:1].unsqueeze(1) + log_probs[:1]")}, "returned"),
    ],
    "q3": [
        ("best_candidate returns a copy of the tokens", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return list(max(candidates, key=lambda c: normalized_score(c[1], len(c[0]) + 1, alpha))[0])
'''}, "return the list itself"),
        ("best_candidate returns the tokens as a tuple", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return tuple(max(candidates, key=lambda c: normalized_score(c[1], len(c[0]) + 1, alpha))[0])
'''}, "return the list itself"),
        ("multiplies by L ** alpha", {"normalized_score": _score("total_logprob * length ** alpha")}, "do not multiply"),
        ("alpha ignored when ranking", {"best_candidate": _best(key="c[1]")}, "alpha is ignored"),
        ("the position of the best", {"best_candidate": '''
def best_candidate(candidates, alpha):
    scores = [normalized_score(lp, len(t) + 1, alpha) for t, lp in candidates]
    return scores.index(max(scores))
'''}, "not its position in the list"),
        ("the pair of the best", {"best_candidate": _best(out="")}, "not the pair (tokens, total_logprob)"),
        ("L * alpha instead of L ** alpha", {"normalized_score": _score("total_logprob / (length * alpha) if alpha else total_logprob")},
         "not L * alpha"),
        ("always the first candidate", {"best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[0][0]
'''}, "not always the first of the list"),
        ("<eos> added again in normalized_score", {"normalized_score": _score("total_logprob / (length + 1) ** alpha")},
         "normalized_score takes L as it is given"),
        ("alpha ignored", {"normalized_score": _score("total_logprob / length")}, "alpha is ignored"),
        ("alpha ** L", {"normalized_score": _score("total_logprob / alpha ** length if alpha else total_logprob")}, "not alpha ** L"),
    ],
}

TRIVIAL = {
    "q1": [
        {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):   # uniform weights over the whole source
    weights = torch.full((query.shape[0], 1, enc_outputs.shape[1]), 1.0 / enc_outputs.shape[1])
    return torch.bmm(weights, enc_outputs), weights
'''},
        {"dot_product_context": _context(scores="torch.bmm(query, enc_outputs.transpose(1, 2)) / 2")},   # the example's sqrt(H)
    ],
    "q2": [
        {"beam_step": '''
def beam_step(beam_scores, log_probs, k):
    return [(0, 0, 0.0)] * k
'''},
        {"beam_step": '''
def beam_step(beam_scores, log_probs, k):   # k ignored
    best = (beam_scores.unsqueeze(1) + log_probs).flatten().topk(2)
    V = log_probs.shape[1]
    return [(int(i) // V, int(i) % V, float(s)) for s, i in zip(best.values, best.indices)]
'''},
    ],
    "q3": [
        {"normalized_score": _score("total_logprob"), "best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[0][0]
'''},
        {"best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[-1][0]
'''},
        {"best_candidate": '''
def best_candidate(candidates, alpha):
    return candidates[1][0]
'''},
        {"best_candidate": _best(key="normalized_score(c[1], len(c[0]) + 2, alpha)")},   # <bos> counted too
        {"normalized_score": _score("total_logprob / (length * alpha) if alpha else total_logprob")},
    ],
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

MORE_ALTERNATIVES = [
    {"dot_product_context": '''
def dot_product_context(query, enc_outputs, valid_lens):   # in float32, with the allowed masked softmax
    q, enc = query.float(), enc_outputs.float()
    w = course_lib.masked_softmax(torch.einsum("bqh,bsh->bqs", q / q.shape[-1] ** 0.5, enc), valid_lens)
    return torch.einsum("bqs,bsh->bqh", w, enc), w
'''},
    {"beam_step": '''
def beam_step(beam_scores, log_probs, k):   # in float32: the top k of each beam, then the top k of those
    totals = beam_scores.float()[:, None] + log_probs.float()
    per_beam = totals.topk(min(k, totals.shape[1]), dim=1)
    candidates = [(float(s), int(i), int(v)) for i in range(totals.shape[0]) for s, v in zip(per_beam.values[i], per_beam.indices[i])]
    candidates.sort(reverse=True)
    return [(i, v, s) for s, i, v in candidates[:k]]
'''},
    {"normalized_score": '''
def normalized_score(total_logprob, length, alpha):   # a float32 tensor
    return torch.tensor(total_logprob) / torch.tensor(float(length)) ** alpha
''', "best_candidate": '''
def best_candidate(candidates, alpha):
    best = None
    for tokens, logprob in candidates:
        s = normalized_score(logprob, len(tokens) + 1, alpha)
        if best is None or s > best[0]:
            best = (s, tokens)
    return best[1]
'''},
    {"best_candidate": '''
def best_candidate(candidates, alpha):   # sorted, best first; the tokens list itself
    ranked = sorted(candidates, key=lambda c: c[1] / (len(c[0]) + 1) ** alpha, reverse=True)
    return ranked[0][0]
'''},
]
