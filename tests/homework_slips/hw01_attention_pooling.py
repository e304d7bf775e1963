"""Homework 1 (attention pooling): slips, trivial answers and alternative correct answers."""

_LOO = '''
def loo_knn_mse(x, y, k):
    dist = (x.reshape(-1, 1) - x.reshape(1, -1)).abs()
    dist.fill_diagonal_(float("inf"))
    nearest = dist.topk(k, dim=1, largest=False).indices
    return ((y[nearest].mean(dim=1) - y) ** 2).mean()
'''


def _loo(dist="(x.reshape(-1, 1) - x.reshape(1, -1)).abs()", diagonal='dist.fill_diagonal_(float("inf"))', k="k",
         guess="y[nearest].mean(dim=1)", error="((guess - y) ** 2).mean()"):
    return f'''
def loo_knn_mse(x, y, k):
    dist = {dist}
    {diagonal}
    nearest = dist.topk({k}, dim=1, largest=False).indices
    guess = {guess}
    return {error}
'''


def _choose(body):
    return f'''
def choose_k(x, y, candidates):
    errors = [loo_knn_mse(x, y, k).item() for k in candidates]
    {body}
'''


def _nw(u="(queries.reshape(-1, 1) - keys.reshape(1, -1)) / h", weights="k / k.sum(dim=1, keepdim=True)",
        out="weights @ values, weights"):
    return f'''
def nw_predict(queries, keys, values, kernel, h):
    k = kernel({u})
    weights = {weights}
    return {out}
'''


_GAUSSIAN_ONLY = '''
def nw_predict(queries, keys, values, kernel, h):
    weights = torch.softmax(-((queries.reshape(-1, 1) - keys.reshape(1, -1)) / h) ** 2 / 2, dim=1)
    return weights @ values, weights
'''


def _tricube(body):
    return f'''
def tricube_kernel(u):
    return {body}
'''


def _neff(body):
    return f'''
def effective_keys(weights):
    return {body}
'''


SLIPS = {
    "q1": [
        ("u^3 instead of |u|^3", {"tricube_kernel": _tricube("(70 / 81) * torch.clamp(1 - u ** 3, min=0) ** 3")},
         "use |u|^3, not u^3"),
        ("no window: not clamped at zero", {"tricube_kernel": _tricube("(70 / 81) * (1 - u.abs() ** 3) ** 3")},
         "must be 0 outside the window"),
        ("constant 70/81 forgotten", {"tricube_kernel": _tricube("torch.clamp(1 - u.abs() ** 3, min=0) ** 3")},
         "κ(0) must be 70/81"),
        ("the input changed in place (abs_)", {"tricube_kernel": _tricube("(70 / 81) * torch.clamp(1 - u.abs_() ** 3, min=0) ** 3")},
         "do not modify the inputs"),
    ],
    "q2": [
        ("normalised over the queries (dim=0)", {"nw_predict": _nw(weights="k / k.sum(dim=0, keepdim=True)")},
         "normalise over the keys"),
        ("bandwidth multiplied instead of divided", {"nw_predict": _nw(u="(queries.reshape(-1, 1) - keys.reshape(1, -1)) * h")},
         "divide the distance by the bandwidth, do not multiply"),
        ("softmax of the kernel values", {"nw_predict": _nw(weights="torch.softmax(k, dim=1)")},
         "not a softmax of the kernel values"),
        ("calls course_lib.nadaraya_watson", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    return course_lib.nadaraya_watson(queries, keys, values, kernel=kernel, bandwidth=h)
'''}, "write it yourself: do not call course_lib.nadaraya_watson"),
    ],
    "q3": [
        ("each point kept among its own neighbours", {"loo_knn_mse": _loo(diagonal="pass")}, "OTHER points only"),
        ("choose_k stops at the first rise of the error", {"choose_k": _choose('''for k, e, f in zip(candidates, errors, errors[1:]):
        if f > e:
            return k
    return candidates[errors.index(min(errors))]''')}, "compute the error of EVERY candidate"),
        ("choose_k takes the largest error", {"choose_k": _choose("return candidates[errors.index(max(errors))]")},
         "SMALLEST leave-one-out error"),
        ("choose_k always returns the second candidate", {"choose_k": '''
def choose_k(x, y, candidates):
    return candidates[1]
'''}, "not always the second of the list"),
    ],
    "q4": [
        ("summed over the queries", {"effective_keys": _neff("1.0 / (weights ** 2).sum(dim=0)")}, "sum over the keys (dim=1)"),
        ("weights not squared", {"effective_keys": _neff("1.0 / weights.sum(dim=1)")}, "square the weights"),
        ("1 / the largest weight", {"effective_keys": _neff("1.0 / weights.max(dim=1).values")}, "not 1 / the largest weight"),
    ],
}

# Checked in the test process by running the autograder's tests on each answer (no notebook).
MORE_SLIPS = {
    "q1": [
        ("the constant upside down, 81/70", {"tricube_kernel": _tricube("(81 / 70) * torch.clamp(1 - u.abs() ** 3, min=0) ** 3")},
         "the constant is 70/81, not 81/70"),
        ("u^2 inside (the triweight shape)", {"tricube_kernel": _tricube("(70 / 81) * torch.clamp(1 - u ** 2, min=0) ** 3")},
         "the inner power is |u|^3"),
        ("the outer cube forgotten", {"tricube_kernel": _tricube("(70 / 81) * torch.clamp(1 - u.abs() ** 3, min=0)")},
         "raise 1 - |u|^3 to the power 3"),
        ("u^3, clamped after the cube", {"tricube_kernel": _tricube("(70 / 81) * torch.clamp((1 - u ** 3) ** 3, min=0)")},
         "use |u|^3, not u^3"),
    ],
    "q2": [
        ("the bandwidth ignored", {"nw_predict": _nw(u="queries.reshape(-1, 1) - keys.reshape(1, -1)")}, "the bandwidth h is ignored"),
        ("key minus query", {"nw_predict": _nw(u="(keys.reshape(1, -1) - queries.reshape(-1, 1)) / h")},
         "the query minus the key"),
        ("kernel values not normalised", {"nw_predict": _nw(weights="k")}, "so that the weights sum to one"),
        ("the mean of the weighted values", {"nw_predict": _nw(out="(weights * values).mean(dim=1), weights")},
         "the weighted SUM of the values"),
        ("the pair returned the other way round", {"nw_predict": _nw(out="weights, weights @ values")},
         "return the pair (predictions, weights), in this order"),
        ("the kernel ignored: always Gaussian", {"nw_predict": _GAUSSIAN_ONLY}, "returned"),
        ("course_lib.NWKernelRegression's pooling reached through a default argument", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h, pool=course_lib.nadaraya_watson):
    return pool(queries, keys, values, kernel=kernel, bandwidth=h)
'''}, "do not use course_lib.nadaraya_watson, reached through nw_predict"),
        ("the queries changed in place", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    queries.div_(h)
    k = kernel(queries.reshape(-1, 1) - keys.reshape(1, -1) / h)
    weights = k / k.sum(dim=1, keepdim=True)
    return weights @ values, weights
'''}, "changed its argument queries"),
    ],
    "q3": [
        ("choose_k sorts the candidates and stops once the error is 10 times the best so far", {"choose_k": '''
def choose_k(x, y, candidates):
    best = None
    for k in sorted(candidates):
        error = float(loo_knn_mse(x, y, k))
        if best is None or error < best[0]:
            best = (error, k)
        elif error > 10 * best[0]:
            break
    return best[1]
'''}, "even after a steep rise"),
        ("choose_k returns a tensor (the candidates indexed by argmin)", {"choose_k": '''
def choose_k(x, y, candidates):
    errors = torch.stack([loo_knn_mse(x, y, k) for k in candidates])
    return torch.tensor(candidates)[errors.argmin()]
'''}, "note the types: the result is Tensor here, int in the expected result"),
        ("signed distance", {"loo_knn_mse": _loo(dist="x.reshape(-1, 1) - x.reshape(1, -1)")}, "use the absolute distance"),
        ("off by one: k + 1 neighbours", {"loo_knn_mse": _loo(k="k + 1")}, "not k + 1"),
        ("off by one: k - 1 neighbours", {"loo_knn_mse": _loo(k="max(k - 1, 1)")}, "not k - 1"),
        ("neighbours found by the targets y", {"loo_knn_mse": _loo(dist="(y.reshape(-1, 1) - y.reshape(1, -1)).abs()")},
         "nearest to it in x"),
        ("the median of the neighbours", {"loo_knn_mse": _loo(guess="y[nearest].median(dim=1).values")}, "MEAN of its k neighbours"),
        ("summed errors", {"loo_knn_mse": _loo(error="((guess - y) ** 2).sum()")}, "not their sum"),
        ("root of the mean squared error", {"loo_knn_mse": _loo(error="((guess - y) ** 2).mean().sqrt()")}, "not its square root"),
        ("mean absolute error", {"loo_knn_mse": _loo(error="(guess - y).abs().mean()")}, "not the mean absolute error"),
        ("neighbours by position in the list", {"loo_knn_mse": _loo(dist="(torch.arange(len(x)).reshape(-1, 1) - torch.arange(len(x)).reshape(1, -1)).abs().double() + 1e-3 * torch.arange(len(x))")},
         "returned"),
        ("x sorted in place", {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    order = torch.argsort(x)
    x[:] = x[order].clone()
    y[:] = y[order].clone()
    dist = (x.reshape(-1, 1) - x.reshape(1, -1)).abs()
    dist.fill_diagonal_(float("inf"))
    return ((y[dist.topk(k, dim=1, largest=False).indices].mean(dim=1) - y) ** 2).mean()
'''}, "do not modify the inputs"),
        ("choose_k returns the position", {"choose_k": _choose("return errors.index(min(errors))")}, "not its position in the list"),
        ("choose_k returns the error", {"choose_k": _choose("return min(errors)")}, "not the error itself"),
        ("choose_k sorts, then stops at the first rise", {"choose_k": '''
def choose_k(x, y, candidates):
    best = None
    for k in sorted(candidates):
        e = loo_knn_mse(x, y, k).item()
        if best is not None and e > best[1]:
            break
        best = (k, e)
    return best[0]
'''}, "several local minima"),
        ("choose_k returns the first candidate", {"choose_k": '''
def choose_k(x, y, candidates):
    return candidates[0]
'''}, "not always the first of the list"),
        ("choose_k returns the last candidate", {"choose_k": '''
def choose_k(x, y, candidates):
    return candidates[-1]
'''}, "not always the last of the list"),
        ("choose_k returns the smallest candidate", {"choose_k": '''
def choose_k(x, y, candidates):
    return min(candidates)
'''}, "the smallest k is not always the best"),
    ],
    "q4": [
        ("no inverse", {"effective_keys": _neff("(weights ** 2).sum(dim=1)")}, "take the inverse"),
        ("the number of non-zero weights", {"effective_keys": _neff("(weights > 0).sum(dim=1).to(weights.dtype)")},
         "not the number of keys with a non-zero weight"),
        ("exp of the entropy", {"effective_keys": _neff("torch.exp(-torch.special.xlogy(weights, weights).sum(dim=1))")},
         "not the exponential of the entropy"),
        ("square root of the inverse", {"effective_keys": _neff("(weights ** 2).sum(dim=1).rsqrt()")}, "without a square root"),
        ("the weights squared in place", {"effective_keys": '''
def effective_keys(weights):
    return 1.0 / weights.pow_(2).sum(dim=1)
'''}, "changed its argument weights"),
    ],
}

TRIVIAL = {
    "q1": [
        {"tricube_kernel": _tricube("(70 / 81) * torch.clamp(1 - u ** 2, min=0)")},   # the Epanechnikov shape
        {"tricube_kernel": _tricube("torch.full_like(u, 70 / 81)")},                  # a constant
        {"tricube_kernel": _tricube("(70 / 81) * (u.abs() <= 1).to(u.dtype)")},      # a boxcar
    ],
    "q2": [
        {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    weights = torch.full((len(queries), len(keys)), 1.0 / len(keys))   # uniform weights
    return weights @ values, weights
'''},
        {"nw_predict": _nw(u="queries.reshape(-1, 1) - keys.reshape(1, -1)")},                     # h ignored
        {"nw_predict": _GAUSSIAN_ONLY},                                                               # kernel ignored
    ],
    "q3": [
        {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    return torch.tensor(0.)
''', "choose_k": '''
def choose_k(x, y, candidates):
    return candidates[0]
'''},
        {"choose_k": '''
def choose_k(x, y, candidates):
    return candidates[1]
'''},
        {"choose_k": '''
def choose_k(x, y, candidates):
    return candidates[-1]
'''},
        {"choose_k": '''
def choose_k(x, y, candidates):
    return 2
'''},
        {"loo_knn_mse": _loo(k="1")},          # k ignored
        {"loo_knn_mse": _loo(dist="(torch.arange(len(x)).reshape(-1, 1) - torch.arange(len(x)).reshape(1, -1)).abs().double() + 1e-3 * torch.arange(len(x))")},   # x ignored
    ],
    "q4": [
        {"effective_keys": _neff("torch.full((weights.shape[0],), float(weights.shape[1]))")},   # the constant K
        {"effective_keys": _neff("torch.ones(weights.shape[0])")},
    ],
}

ALTERNATIVES = {
    # a piecewise definition with torch.where, in float32 whatever the input
    "tricube_kernel": '''
def tricube_kernel(u):
    a = u.float().abs()
    return torch.where(a <= 1, 70 / 81 * (1 - a ** 3) ** 3, torch.zeros_like(a))
''',
    # a Python loop over the queries
    "nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    rows = []
    for q in queries:
        k = kernel((q - keys) / h)
        rows.append(k / k.sum())
    weights = torch.stack(rows)
    return torch.stack([(w * values).sum() for w in weights]), weights
''',
    # an explicit loop and sorting, one point at a time
    "loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    errors = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        others.sort(key=lambda j: abs(float(x[j] - x[i])))
        errors.append((y[others[:k]].mean() - y[i]) ** 2)
    return torch.stack(errors).mean()
''',
    "choose_k": '''
def choose_k(x, y, candidates):
    return min(candidates, key=lambda k: float(loo_knn_mse(x, y, k)))
''',
    "effective_keys": '''
def effective_keys(weights):
    return torch.einsum("qk,qk->q", weights, weights).reciprocal()
''',
}

# More correct answers, each graded in the test process (one dictionary per answer; the other
# functions keep the master's solution). Each question has one that computes in float32.
MORE_ALTERNATIVES = [
    {"tricube_kernel": '''
def tricube_kernel(u):
    return torch.clamp(70 / 81 * (1 - u.abs() ** 3) ** 3, min=0)   # clamping after the cube: the same
'''},
    {"tricube_kernel": '''
def tricube_kernel(u):
    out = torch.zeros(u.shape, dtype=torch.float64)
    inside = u.abs() < 1
    out[inside] = 70 / 81 * (1 - u[inside].double().abs() ** 3) ** 3
    return out
'''},
    {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):   # in float32 whatever the input
    q, k, v = queries.float(), keys.float(), values.float()
    s = kernel((q[:, None] - k[None, :]) / h)
    w = s / s.sum(-1, keepdim=True)
    return (w * v).sum(-1), w
'''},
    {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):   # in float32, with argsort
    x32, y32 = x.float(), y.float()
    d = (x32[:, None] - x32[None, :]).abs() + torch.diag(torch.full((len(x),), float("inf")))
    nearest = d.argsort(dim=1)[:, :k]
    return ((y32[nearest].mean(1) - y32) ** 2).mean()
''', "choose_k": '''
def choose_k(x, y, candidates):
    best = None
    for k in candidates:
        e = float(loo_knn_mse(x, y, k))
        if best is None or e < best[1]:
            best = (k, e)
    return best[0]
'''},
    {"effective_keys": '''
def effective_keys(weights):   # in float32
    w = weights.float()
    return 1 / (w * w).sum(-1)
'''},
    {"choose_k": '''
def choose_k(x, y, candidates):   # min with a key, errors as Python floats
    return min(candidates, key=lambda k: float(loo_knn_mse(x, y, k)))
'''},
]
