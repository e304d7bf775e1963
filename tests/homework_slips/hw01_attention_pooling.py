"""Homework 1 (attention pooling): slips, trivial answers and alternative correct answers."""

SLIPS = {
    "q1": [
        ("u^3 instead of |u|^3", {"tricube_kernel": '''
def tricube_kernel(u):
    return (70 / 81) * torch.clamp(1 - u ** 3, min=0) ** 3
'''}, "use |u|^3, not u^3"),
        ("no window: not clamped at zero", {"tricube_kernel": '''
def tricube_kernel(u):
    return (70 / 81) * (1 - u.abs() ** 3) ** 3
'''}, "exactly 0 outside the window"),
        ("constant 70/81 forgotten", {"tricube_kernel": '''
def tricube_kernel(u):
    return torch.clamp(1 - u.abs() ** 3, min=0) ** 3
'''}, "K(0) must be 70/81"),
    ],
    "q2": [
        ("normalised over the queries (dim=0)", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    k = kernel((queries.reshape(-1, 1) - keys.reshape(1, -1)) / h)
    weights = k / k.sum(dim=0, keepdim=True)
    return weights @ values, weights
'''}, "normalise over the keys"),
        ("bandwidth multiplied instead of divided", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    k = kernel((queries.reshape(-1, 1) - keys.reshape(1, -1)) * h)
    weights = k / k.sum(dim=1, keepdim=True)
    return weights @ values, weights
'''}, "divide the distance by the bandwidth, do not multiply"),
        ("softmax of the kernel values", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    weights = torch.softmax(kernel((queries.reshape(-1, 1) - keys.reshape(1, -1)) / h), dim=1)
    return weights @ values, weights
'''}, "not a softmax of the kernel values"),
        ("calls course_lib.nadaraya_watson", {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    return course_lib.nadaraya_watson(queries, keys, values, kernel=kernel, bandwidth=h)
'''}, "write it yourself: do not call course_lib.nadaraya_watson"),
    ],
    "q3": [
        ("each point kept among its own neighbours", {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    dist = (x.reshape(-1, 1) - x.reshape(1, -1)).abs()
    nearest = dist.topk(k, dim=1, largest=False).indices
    return ((y[nearest].mean(dim=1) - y) ** 2).mean()
'''}, "OTHER points only"),
        ("signed distance", {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    dist = x.reshape(-1, 1) - x.reshape(1, -1)
    dist.fill_diagonal_(float("inf"))
    nearest = dist.topk(k, dim=1, largest=False).indices
    return ((y[nearest].mean(dim=1) - y) ** 2).mean()
'''}, "use the absolute distance"),
        ("choose_k takes the largest error", {"choose_k": '''
def choose_k(x, y, candidates):
    errors = [loo_knn_mse(x, y, k).item() for k in candidates]
    return candidates[errors.index(max(errors))]
'''}, "SMALLEST leave-one-out error"),
        ("off by one: k + 1 neighbours", {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    dist = (x.reshape(-1, 1) - x.reshape(1, -1)).abs()
    dist.fill_diagonal_(float("inf"))
    nearest = dist.topk(k + 1, dim=1, largest=False).indices
    return ((y[nearest].mean(dim=1) - y) ** 2).mean()
'''}, "off by one"),
    ],
    "q4": [
        ("summed over the queries", {"effective_keys": '''
def effective_keys(weights):
    return 1.0 / (weights ** 2).sum(dim=0)
'''}, "sum over the keys (dim=1)"),
        ("weights not squared", {"effective_keys": '''
def effective_keys(weights):
    return 1.0 / weights.sum(dim=1)
'''}, "square the weights"),
        ("1 / the largest weight", {"effective_keys": '''
def effective_keys(weights):
    return 1.0 / weights.max(dim=1).values
'''}, "not 1 / the largest weight"),
    ],
}

TRIVIAL = {
    "q1": {"tricube_kernel": '''
def tricube_kernel(u):
    return (70 / 81) * torch.clamp(1 - u ** 2, min=0)   # the Epanechnikov shape
'''},
    "q2": {"nw_predict": '''
def nw_predict(queries, keys, values, kernel, h):
    weights = torch.full((len(queries), len(keys)), 1.0 / len(keys))   # uniform weights
    return weights @ values, weights
'''},
    "q3": {"loo_knn_mse": '''
def loo_knn_mse(x, y, k):
    return torch.tensor(0.)
''', "choose_k": '''
def choose_k(x, y, candidates):
    return candidates[0]
'''},
    "q4": {"effective_keys": '''
def effective_keys(weights):
    return torch.full((weights.shape[0],), float(weights.shape[1]))   # the constant K
'''},
}

ALTERNATIVES = {
    # a piecewise definition with torch.where, in float64
    "tricube_kernel": '''
def tricube_kernel(u):
    a = u.double().abs()
    return torch.where(a <= 1, 70 / 81 * (1 - a ** 3) ** 3, torch.zeros_like(a)).to(u.dtype)
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
