"""Homework 6 (BERT): slips, trivial answers and alternative correct answers."""

_BUILD = '''tokens = ["<cls>"] + a + ["<sep>"]
    segments = [0] * len(tokens)
    if b is not None:
        tokens += b + ["<sep>"]
        segments += [1] * (len(b) + 1)
    return tokens, segments'''


# bert_input's slips differ from the solution in one place each.
def _input(room="max_len - (2 if b is None else 3)", longer_b="b is not None and len(b) >= len(a)", build=_BUILD,
           b="None if tokens_b is None else list(tokens_b)", a="list(tokens_a)"):
    return f'''
def bert_input(tokens_a, tokens_b=None, max_len=None):
    a = {a}
    b = {b}
    if max_len is not None:
        room = {room}
        while len(a) + (0 if b is None else len(b)) > room:
            if {longer_b}:
                b.pop()
            else:
                a.pop()
    {build}
'''


def _mlm(scores="logits.gather(1, pred_positions.long().unsqueeze(-1).expand(-1, -1, logits.shape[-1]))",
         reduce="(nll * weights).sum() / weights.sum()"):
    return f'''
def masked_lm_loss(logits, pred_positions, labels, weights):
    scores = {scores}
    nll = -torch.log_softmax(scores, dim=-1).gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return {reduce}
'''


def _mask(candidates="torch.nonzero(~special.bool()).squeeze(1)", k="max(1, round(0.15 * len(candidates)))",
          order="torch.argsort(r[candidates])", rule="mask_id if x < 0.8 else int(random_ids[i]) if x < 0.9 else int(ids[i])",
          labels="ids[positions]"):
    return f'''
def mask_for_mlm(ids, special, r, u, random_ids, mask_id):
    candidates = {candidates}
    k = {k}
    positions = torch.sort(candidates[{order}[:k]]).values
    masked = ids.clone()
    for i in positions.tolist():
        x = float(u[i])
        masked[i] = {rule}
    return masked, positions, {labels}
'''


def _nsp(others="e != d", label="1", coin="coins[k] < 0.5", k="len(pairs)", pick="others[int(picks[k] * len(others))]"):
    return f'''
def nsp_pairs(documents, coins, picks):
    pairs = []
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if {others} for s in other]
        for i in range(len(doc) - 1):
            k = {k}
            if {coin}:
                pairs.append((doc[i], doc[i + 1], {label}))
            else:
                pairs.append((doc[i], {pick}, 1 - {label}))
    return pairs
'''


_DEFAULT_BUILD = '''
import course_lib.bert


def bert_input(tokens_a, tokens_b=None, max_len=None, build=course_lib.bert.get_tokens_and_segments):
    a, b = list(tokens_a), None if tokens_b is None else list(tokens_b)
    while max_len is not None and len(a) + (0 if b is None else len(b)) > max_len - (2 if b is None else 3):
        (b if b is not None and len(b) >= len(a) else a).pop()
    return build(a, b)
'''

_TWO_LEVEL = '''
def _two_level(documents, d, pick):
    other = [doc for e, doc in enumerate(documents) if e != d]
    chosen = other[int(pick * len(other))]
    return chosen[int(pick * len(chosen))]

'''


SLIPS = {
    "q1": [
        ("the first <sep> given segment 1 (as if it opened text b)", {"bert_input": _input(build='''tokens = ["<cls>"] + a
    segments = [0] * len(tokens)
    if b is None:
        return tokens + ["<sep>"], segments + [0]
    tokens += ["<sep>"] + b + ["<sep>"]
    segments += [1] * (len(b) + 2)
    return tokens, segments''')}, "the first <sep> closes text a: it has segment 0"),
        ("no <sep> after text b", {"bert_input": _input(build='''tokens = ["<cls>"] + a + ["<sep>"]
    segments = [0] * len(tokens)
    if b is not None:
        tokens += b
        segments += [1] * len(b)
    return tokens, segments''')}, "a pair ends with a second <sep>"),
        ("max_len compared with the texts alone, special tokens not counted", {"bert_input": _input(room="max_len")},
         "max_len counts <cls> and the <sep> tokens too"),
        ("only text b trimmed", {"bert_input": _input(longer_b="b")}, "trim the LONGER text"),
        ("the built input cut at max_len", {"bert_input": '''
def bert_input(tokens_a, tokens_b=None, max_len=None):
    tokens = ["<cls>"] + list(tokens_a) + ["<sep>"]
    segments = [0] * len(tokens)
    if tokens_b is not None:
        tokens += list(tokens_b) + ["<sep>"]
        segments += [1] * (len(tokens_b) + 1)
    if max_len is not None:
        tokens, segments = tokens[:max_len], segments[:max_len]
    return tokens, segments
'''}, "trim the texts before adding the special tokens"),
        ("text a trimmed when both are equally long", {"bert_input": _input(longer_b="b is not None and len(b) > len(a)")},
         "when the two texts are equally long, trim text b"),
        ("an empty second text taken for no second text", {"bert_input": _input(b="list(tokens_b) if tokens_b else None")},
         "an empty second text is still a second text"),
        ("the chapter's course_lib.bert.get_tokens_and_segments bound to a default argument", {"bert_input": _DEFAULT_BUILD},
         "reached through bert_input"),
    ],
    "q2": [
        ("divided by all B * P slots, padding included", {"masked_lm_loss": _mlm(reduce="(nll * weights).sum() / weights.numel()")},
         "divide by the number of REAL predictions"),
        ("summed, not averaged", {"masked_lm_loss": _mlm(reduce="(nll * weights).sum()")}, "do not sum them"),
        ("weights forgotten", {"masked_lm_loss": _mlm(reduce="nll.mean()")}, "multiply each loss by its weight"),
        ("averaged per sequence, then over the batch", {"masked_lm_loss": _mlm(reduce="((nll * weights).sum(1) / weights.sum(1)).mean()")},
         "not per sequence and then over the sequences"),
        ("scores of the first P positions, pred_positions ignored", {"masked_lm_loss": _mlm(scores="logits[:, :pred_positions.shape[1]]")},
         "take the scores at pred_positions"),
        ("the raw score of the label, no log-softmax", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    scores = logits[torch.arange(logits.shape[0]).unsqueeze(1), pred_positions]        # (B, P, V)
    nll = -scores.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (nll * weights).sum() / weights.sum()
'''}, "the loss is the cross-entropy"),
        ("gathers, then calls the chapter's course_lib.bert.masked_lm_loss", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    import course_lib.bert
    scores = logits[torch.arange(logits.shape[0]).unsqueeze(1), pred_positions]        # (B, P, V)
    return course_lib.bert.masked_lm_loss(scores, labels, weights)
'''}, "do not call course_lib.masked_lm_loss"),
        ("course_lib.training.masked_ce_loss on the gathered scores", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    import course_lib.training
    scores = logits[torch.arange(logits.shape[0]).unsqueeze(1), pred_positions]        # (B, P, V)
    return course_lib.training.masked_ce_loss(scores, labels, weights.sum(dim=1).long())
'''}, "do not call course_lib.masked_ce_loss"),
    ],
    "q3": [
        ("thresholds swapped: random below 0.8, <mask> between 0.8 and 0.9",
         {"mask_for_mlm": _mask(rule="int(random_ids[i]) if x < 0.8 else mask_id if x < 0.9 else int(ids[i])")},
         "<mask> for u < 0.8, a random token for 0.8 <= u < 0.9"),
        ("a random token for every u >= 0.8", {"mask_for_mlm": _mask(rule="mask_id if x < 0.8 else int(random_ids[i])")},
         "the last 10% (u >= 0.9) keep their own token: no random token there"),
        ("<mask> instead of the unchanged token for u >= 0.9",
         {"mask_for_mlm": _mask(rule="mask_id if x < 0.8 or x >= 0.9 else int(random_ids[i])")},
         "the last 10% (u >= 0.9) keep their own token, not <mask>"),
        ("15% of all T positions", {"mask_for_mlm": _mask(k="max(1, round(0.15 * len(ids)))")},
         "k is 15% of the n NON-SPECIAL tokens"),
        ("int() instead of round()", {"mask_for_mlm": _mask(k="max(1, int(0.15 * len(candidates)))")},
         "round, do not truncate"),
        ("Python's round replaced by rounding half up", {"mask_for_mlm": _mask(k="max(1, math.floor(0.15 * len(candidates) + 0.5))")},
         "rounds a half to the even number"),
        ("<= at the 0.8 and 0.9 edges", {"mask_for_mlm": _mask(rule="mask_id if x <= 0.8 else int(random_ids[i]) if x <= 0.9 else int(ids[i])")},
         "mind the edges"),
        ("k rounded up with ceil", {"mask_for_mlm": _mask(k="max(1, math.ceil(0.15 * len(candidates)))")}, "do not round up with ceil"),
    ],
    "q4": [
        ("the random sentence may come from the same document", {"nsp_pairs": _nsp(others="True")},
         "the random second sentence comes from ANOTHER document"),
        ("labels flipped (1 for a random sentence)", {"nsp_pairs": _nsp(label="0")},
         "label 1 means that the second sentence really follows the first"),
        ("consecutive sentences of the whole corpus, across documents", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    flat = [(d, s) for d, doc in enumerate(documents) for s in doc]
    pairs = []
    for k in range(len(flat) - 1):
        d, s = flat[k]
        if coins[k] < 0.5:
            pairs.append((s, flat[k + 1][1], 1))
        else:
            others = [t for e, t in flat if e != d]
            pairs.append((s, others[int(picks[k] * len(others))], 0))
    return pairs
'''}, "pairs never cross documents"),
        ("coin read the other way round", {"nsp_pairs": _nsp(coin="coins[k] >= 0.5")},
         "coins[k] < 0.5 keeps the true next sentence"),
        ("the pair counter restarts in every document", {"nsp_pairs": _nsp(k="i")},
         "counting across documents"),
        ("a coin of exactly 0.5 kept as the true next sentence", {"nsp_pairs": _nsp(coin="coins[k] <= 0.5")},
         "a coin of exactly 0.5 gives a random one"),
        ("a document first, then a sentence of it (the chapter's draw)", {"nsp_pairs": _TWO_LEVEL + _nsp(pick="_two_level(documents, d, picks[k])")},
         "not a document first and then a sentence"),
    ],
}

MORE_SLIPS = {
    "q1": [
        ("every segment 0", {"bert_input": _input(build='''tokens = ["<cls>"] + a + ["<sep>"]
    if b is not None:
        tokens += b + ["<sep>"]
    return tokens, [0] * len(tokens)''')}, "the tokens of text b and the last <sep> have segment 1"),
        ("trims, then calls the chapter's course_lib.bert.get_tokens_and_segments", {"bert_input": _input(build='''import course_lib.bert
    return course_lib.bert.get_tokens_and_segments(a, b)''')}, "do not call course_lib.get_tokens_and_segments"),
        ("trims from the front", {"bert_input": _input(longer_b="b is not None and len(b) >= len(a)").replace(".pop()", ".pop(0)")},
         "not the first"),
        ("the two texts trimmed in turn", {"bert_input": '''
def bert_input(tokens_a, tokens_b=None, max_len=None):
    a, b = list(tokens_a), None if tokens_b is None else list(tokens_b)
    turn = 0
    while max_len is not None and len(a) + (0 if b is None else len(b)) > max_len - (2 if b is None else 3):
        use_b = b is not None and (turn % 2 == 0 and len(b) > 0 or len(a) == 0)
        (b if use_b else a).pop()
        turn += 1
    tokens = ["<cls>"] + a + ["<sep>"] + ([] if b is None else b + ["<sep>"])
    return tokens, [0] * (len(a) + 2) + ([] if b is None else [1] * (len(b) + 1))
'''}, "not from each text in turn"),
        ("one <sep> forgotten in the budget of a pair", {"bert_input": _input(room="max_len - 2")}, "BOTH <sep> tokens"),
        ("the lists trimmed in place", {"bert_input": _input(a="tokens_a", b="tokens_b")}, "changed its argument tokens_"),
    ],
    "q2": [
        ("divided by the number of sequences", {"masked_lm_loss": _mlm(reduce="(nll * weights).sum() / weights.shape[0]")},
         "not by the number of sequences B"),
        ("log-softmax over the positions", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    log_p = torch.log_softmax(logits, dim=1)[torch.arange(logits.shape[0]).unsqueeze(1), pred_positions]
    nll = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (nll * weights).sum() / weights.sum()
'''}, "not over the positions of the sequence"),
        ("the log-probability without the minus", {"masked_lm_loss": _mlm(reduce="-(nll * weights).sum() / weights.sum()")}, "it is positive"),
        ("F.cross_entropy over every slot", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    scores = logits[torch.arange(logits.shape[0]).unsqueeze(1), pred_positions]
    return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1))
'''}, "multiply each loss by its weight"),
        ("the chapter's course_lib.bert.gather_positions", {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    import course_lib.bert
    scores = course_lib.bert.gather_positions(logits, pred_positions)
    nll = F.cross_entropy(scores.transpose(1, 2), labels, reduction="none")
    return (nll * weights).sum() / weights.sum()
'''}, "do not call course_lib.gather_positions"),
        ("the loss turned into a Python number", {"masked_lm_loss": _mlm(reduce="torch.tensor(float((nll * weights).sum() / weights.sum()))")},
         "keep the computation graph"),
    ],
    "q3": [
        ("special tokens may be picked", {"mask_for_mlm": _mask(candidates="torch.arange(len(ids))")},
         "never pick a special token"),
        ("labels read from the corrupted sequence", {"mask_for_mlm": _mask(labels="masked[positions]")},
         "the labels are the ORIGINAL tokens"),
        ("largest r picked", {"mask_for_mlm": _mask(order="torch.argsort(r[candidates], descending=True)")},
         "pick the positions with the SMALLEST r"),
        ("the positions in the order of r", {"mask_for_mlm": _mask().replace("positions = torch.sort(candidates[torch.argsort(r[candidates])[:k]]).values",
                                                                            "positions = candidates[torch.argsort(r[candidates])[:k]]")},
         "not in the order of r"),
        ("no minimum of one", {"mask_for_mlm": _mask(k="round(0.15 * len(candidates))")}, "at least one token is picked"),
        ("ids corrupted in place", {"mask_for_mlm": _mask(labels="ids[positions].clone()").replace("masked = ids.clone()", "masked = ids")},
         "changed its argument ids"),
    ],
    "q4": [
        ("labels as bools", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    pairs = []
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d for s in other]
        for i in range(len(doc) - 1):
            k = len(pairs)
            pairs.append((doc[i], doc[i + 1], True) if coins[k] < 0.5 else (doc[i], others[int(picks[k] * len(others))], False))
    return pairs
'''}, "is bool here, int in the expected result"),
        ("pairs as lists", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    pairs = []
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d for s in other]
        for i in range(len(doc) - 1):
            k = len(pairs)
            pairs.append([doc[i], doc[i + 1], 1] if coins[k] < 0.5 else [doc[i], others[int(picks[k] * len(others))], 0])
    return pairs
'''}, "is list here, tuple in the expected result"),
        ("copies of the sentences in the pairs", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    import copy
    pairs = []
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d for s in other]
        for i in range(len(doc) - 1):
            k = len(pairs)
            pair = (doc[i], doc[i + 1], 1) if coins[k] < 0.5 else (doc[i], others[int(picks[k] * len(others))], 0)
            pairs.append(copy.deepcopy(pair))
    return pairs
'''}, "holds a copy of a sentence"),
        ("picks counted over the random pairs only", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    pairs, drawn = [], 0
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d for s in other]
        for i in range(len(doc) - 1):
            k = len(pairs)
            if coins[k] < 0.5:
                pairs.append((doc[i], doc[i + 1], 1))
            else:
                pairs.append((doc[i], others[int(picks[drawn] * len(others))], 0))
                drawn += 1
    return pairs
'''}, "not for the k-th random pair"),
        ("the documents emptied after use", {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    pairs = []
    for d, doc in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d for s in other]
        for i in range(len(doc) - 1):
            k = len(pairs)
            pairs.append((doc[i], doc[i + 1], 1) if coins[k] < 0.5 else (doc[i], others[int(picks[k] * len(others))], 0))
    documents.clear()
    return pairs
'''}, "changed its argument documents"),
    ],
}

TRIVIAL = {
    "q1": [
        {"bert_input": '''
def bert_input(tokens_a, tokens_b=None, max_len=None):
    return list(tokens_a), [0] * len(tokens_a)
'''},
        {"bert_input": _input(room="10 ** 9")},     # max_len ignored
    ],
    "q2": [
        {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    return torch.tensor(math.log(logits.shape[-1]))
'''},
        {"masked_lm_loss": _mlm(reduce="nll.mean()")},   # weights ignored
    ],
    "q3": [
        {"mask_for_mlm": '''
def mask_for_mlm(ids, special, r, u, random_ids, mask_id):
    return ids.clone(), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
'''},
        {"mask_for_mlm": _mask(rule="mask_id")},             # u ignored: always <mask>
        {"mask_for_mlm": _mask(k="3")},                      # the example's k as a constant
    ],
    "q4": [
        {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    return []
'''},
        {"nsp_pairs": _nsp(coin="True")},                    # the coins ignored
    ],
}

ALTERNATIVES = {
    # the kept lengths first, by counting; then slices; a tuple of tokens and a tensor of segments
    "bert_input": '''
def bert_input(tokens_a, tokens_b=None, max_len=None):
    la, lb = len(tokens_a), (0 if tokens_b is None else len(tokens_b))
    specials = 2 if tokens_b is None else 3
    if max_len is not None:
        while la + lb + specials > max_len:
            if tokens_b is not None and lb >= la:
                lb -= 1
            else:
                la -= 1
    tokens = ("<cls>", *tokens_a[:la], "<sep>")
    if tokens_b is not None:
        tokens = tokens + (*tokens_b[:lb], "<sep>")
    segments = torch.zeros(len(tokens), dtype=torch.long)
    segments[la + 2:] = 1
    return tokens, segments
''',
    # advanced indexing, F.cross_entropy per slot, the real slots selected by a boolean mask, in float64
    "masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):
    B, P = pred_positions.shape
    rows = torch.arange(B).unsqueeze(1).expand(B, P)
    scores = logits[rows, pred_positions].double()                          # (B, P, V)
    per_slot = F.cross_entropy(scores.reshape(B * P, -1), labels.reshape(-1), reduction="none")
    real = weights.reshape(-1) > 0
    return per_slot[real].mean().to(logits.dtype)
''',
    # plain Python over the positions
    "mask_for_mlm": '''
def mask_for_mlm(ids, special, r, u, random_ids, mask_id):
    T = len(ids)
    candidates = [i for i in range(T) if not bool(special[i])]
    k = max(1, round(0.15 * len(candidates)))
    picked = sorted(sorted(candidates, key=lambda i: float(r[i]))[:k])
    out = [int(t) for t in ids]
    for i in picked:
        if float(u[i]) < 0.8:
            out[i] = mask_id
        elif float(u[i]) < 0.9:
            out[i] = int(random_ids[i])
    return torch.tensor(out), torch.tensor(picked), torch.tensor([int(ids[i]) for i in picked])
''',
    # every sentence tagged with its document, the pairs listed first, the coins used afterwards
    "nsp_pairs": '''
def nsp_pairs(documents, coins, picks):
    tagged = [(d, s) for d, doc in enumerate(documents) for s in doc]
    starts = [(d, doc[i], doc[i + 1]) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    result = []
    for k, (d, first, true_next) in enumerate(starts):
        if coins[k] >= 0.5:
            pool = [s for e, s in tagged if e != d]
            result.append((first, pool[int(picks[k] * len(pool))], 0))
        else:
            result.append((first, true_next, 1))
    return result
''',
}

MORE_ALTERNATIVES = [
    {"bert_input": '''
def bert_input(tokens_a, tokens_b=None, max_len=None):   # the lengths computed in one go, a tuple of tokens
    a, b = len(tokens_a), None if tokens_b is None else len(tokens_b)
    if max_len is not None:
        room = max_len - (2 if b is None else 3)
        while a + (b or 0) > room:
            if b is not None and b >= a:
                b -= 1
            else:
                a -= 1
    tokens = ("<cls>", *tokens_a[:a], "<sep>") + (() if b is None else (*tokens_b[:b], "<sep>"))
    return tokens, [0] * (a + 2) + ([] if b is None else [1] * (b + 1))
'''},
    {"masked_lm_loss": '''
def masked_lm_loss(logits, pred_positions, labels, weights):   # in float32, with cross_entropy and ignore_index on the padding labels
    B, P = pred_positions.shape
    scores = torch.gather(logits.float(), 1, pred_positions.unsqueeze(-1).expand(B, P, logits.shape[-1]))
    target = torch.where(weights > 0, labels, torch.full_like(labels, -100))
    return F.cross_entropy(scores.reshape(B * P, -1), target.reshape(-1), ignore_index=-100)
'''},
    {"mask_for_mlm": '''
def mask_for_mlm(ids, special, r, u, random_ids, mask_id):   # in float32, with torch.where
    n = int((~special).sum())
    k = max(1, round(0.15 * n))
    score = torch.where(special, torch.tensor(float("inf")), r.float())
    positions = torch.sort(torch.topk(score, k, largest=False).indices).values
    u32 = u.float()[positions]
    original = ids[positions]
    new = torch.where(u32 < 0.8, torch.full_like(original, mask_id), torch.where(u32 < 0.9, random_ids[positions], original))
    masked = ids.clone()
    masked[positions] = new
    return masked, positions, original
'''},
    {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):   # the other sentences as (document, index) pairs, labels as bools turned into ints
    where = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc))]
    out, k = [], 0
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if coins[k] < 0.5:
                out.append((doc[i], doc[i + 1], int(True)))
            else:
                others = [documents[e][j] for e, j in where if e != d]
                out.append((doc[i], others[int(picks[k] * len(others))], int(False)))
            k += 1
    return out
'''},
    {"nsp_pairs": '''
def nsp_pairs(documents, coins, picks):   # the starts listed first, the other sentences gathered per pair
    starts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    out = []
    for k, (d, i) in enumerate(starts):
        if coins[k] < 0.5:
            out.append((documents[d][i], documents[d][i + 1], 1))
        else:
            others = [s for e in range(len(documents)) if e != d for s in documents[e]]
            out.append((documents[d][i], others[int(picks[k] * len(others))], 0))
    return out
'''},
]
