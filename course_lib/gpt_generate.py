"""Chapter 7: generating text with a decoder-only model: greedy decoding and sampling.

Shape legend: B batch, T prompt length, V vocabulary size.

A language model gives, for the next token, logits (B, V). Decoding picks one:

* **greedy**: the most likely token (``temperature=0`` or ``do_sample=False``); ties go
  to the lowest token id (``torch.argmax``'s first maximum);
* **temperature** τ > 0: sample from softmax(logits / τ); τ < 1 sharpens the
  distribution toward greedy, τ > 1 flattens it toward uniform;
* **top-k** (Fan et al. 2018): keep the k largest logits, sample among them;
* **top-p**, nucleus sampling (Holtzman et al. 2020): keep the most likely tokens until
  their probability reaches p, sample among them.

Filters apply in that order (temperature, then top-k, then top-p, as Hugging Face's
``generate`` does), and sampling draws from a ``torch.Generator`` when one is given:
the same generator state gives the same tokens.

**Ties and boundaries, exactly.** :func:`top_k_filter` keeps every token whose logit is
at least the k-th largest, so tokens tied with the k-th are all kept (more than k
survive a tie). :func:`top_p_filter` sorts the tokens by probability, ties in the order
of their ids (a stable sort, lower id first), and keeps a token if the probability of
the tokens before it is still below p: the smallest such set whose mass reaches p. When
the mass of the first m tokens equals p exactly (up to 1e-6 for rounding), those m
tokens are kept and not the (m + 1)-th. ``top_p=1`` keeps everything.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib._checks import check_bool, check_int, check_number, describe

#: Cumulative probabilities within this of p count as reaching p (rounding of the softmax).
TOP_P_TOLERANCE = 1e-6


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.dim() < 1 or not logits.dtype.is_floating_point:
        raise ValueError(f"expected floating-point logits (..., V), got {describe(logits)}")


def check_top_k(top_k: object) -> int | None:
    """None, or an int >= 1."""
    return None if top_k is None else check_int("top_k", top_k, minimum=1)


def check_top_p(top_p: object) -> float | None:
    """None, or a number in (0, 1]."""
    if top_p is None:
        return None
    return check_number("top_p", top_p, positive=True, maximum=1.0)


def top_k_filter(logits: Tensor, top_k: int) -> Tensor:
    """Logits (..., V) with every token below the k-th largest set to -inf (a new tensor; ties with the k-th kept)."""
    _check_logits(logits)
    k = min(check_int("top_k", top_k, minimum=1), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Logits (..., V) with the tokens outside the nucleus of mass ``top_p`` set to -inf (a new tensor).

    See the module's docstring for the exact rule (ties by id, exact boundaries).
    """
    _check_logits(logits)
    p = check_number("top_p", top_p, positive=True, maximum=1.0)
    if p == 1.0:
        return logits.clone()
    probs = torch.softmax(logits.double(), dim=-1)  # (..., V), float64: boundaries rounded as little as possible
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)  # ties: lower id first
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (..., V): mass of the tokens before each
    keep_sorted = mass_before < p - TOP_P_TOLERANCE  # (..., V)
    keep_sorted[..., 0] = True  # the most likely token always stays, however small p is
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # back to token order
    return logits.masked_fill(~keep, float("-inf"))


def next_token_distribution(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None) -> Tensor:
    """Probabilities (..., V) of the next token after temperature, top-k and top-p (temperature > 0)."""
    _check_logits(logits)
    temperature = check_number("temperature", temperature, positive=True)
    scores = logits.float() / temperature
    if check_top_k(top_k) is not None:
        scores = top_k_filter(scores, top_k)
    if check_top_p(top_p) is not None:
        scores = top_p_filter(scores, top_p)
    return torch.softmax(scores, dim=-1)


@torch.no_grad()
def generate(
    net: nn.Module,
    prompt: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    eos: int | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue ``prompt`` with up to ``max_new_tokens`` tokens; returns (B, T + new) token ids.

    Args:
        net: a :class:`course_lib.gpt.GPT` (put in evaluation mode here, and left so).
        prompt: token ids (T,) or (B, T), T >= 1, at most ``net.config.max_len``.
        max_new_tokens: an int >= 0; the prompt plus the new tokens must fit in
            ``max_len``.
        temperature: 0 for greedy decoding, else > 0 (sampling).
        top_k, top_p: None, or an int >= 1 and a number in (0, 1] (sampling only).
        do_sample: False for greedy decoding whatever the temperature.
        generator: the ``torch.Generator`` to sample with (None: PyTorch's global one).
        eos: the end token: a sequence that produces it stops; generation ends when
            all have (the finished ones are padded with ``eos``).
        use_cache: read the prompt once, then one token per call with the key/value
            cache (True), or the whole sequence again at every step (False, slower;
            the same tokens).

    A 1-D prompt gives a (1, T + new) result.
    """
    check_int("max_new_tokens", max_new_tokens, minimum=0)
    temperature = check_number("temperature", temperature, minimum=0.0)
    check_top_k(top_k)
    check_top_p(top_p)
    check_bool("do_sample", do_sample)
    check_bool("use_cache", use_cache)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    config = getattr(net, "config", None)
    if not isinstance(net, nn.Module) or config is None or not hasattr(net, "make_cache"):
        raise ValueError(f"generate expects a course_lib.gpt.GPT, got {type(net).__name__}")
    if isinstance(prompt, Tensor) and prompt.dim() == 1:
        prompt = prompt.unsqueeze(0)  # (1, T)
    if not isinstance(prompt, Tensor) or prompt.dim() != 2 or prompt.shape[1] == 0 or prompt.dtype.is_floating_point \
            or prompt.dtype == torch.bool:
        raise ValueError(f"prompt must be token ids (T,) or (B, T) with T >= 1 and an integer dtype, "
                         f"got {describe(prompt)}")
    if prompt.shape[1] > config.max_len:
        raise ValueError(f"the prompt has {prompt.shape[1]} tokens, more than the model's context of "
                         f"max_len={config.max_len}")
    if prompt.shape[1] + max_new_tokens > config.max_len:
        raise ValueError(f"a prompt of {prompt.shape[1]} tokens and {max_new_tokens} new ones exceed the model's "
                         f"context of max_len={config.max_len}; ask for at most {config.max_len - prompt.shape[1]}")
    if eos is not None:
        check_int("eos", eos, minimum=0, maximum=config.vocab_size - 1)
    greedy = temperature == 0.0 or not do_sample
    net.eval()
    tokens = prompt
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)  # (B,)
    cache = net.make_cache() if use_cache else None
    new = prompt
    for _ in range(max_new_tokens):
        logits = net(new, cache)[:, -1] if use_cache else net(tokens)[:, -1]  # (B, V)
        if greedy:
            nxt = logits.argmax(dim=-1)  # (B,)
        else:
            probs = next_token_distribution(logits, temperature=temperature, top_k=top_k, top_p=top_p)  # (B, V)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        if eos is not None:
            nxt = nxt.masked_fill(done, eos)
            done = done | (nxt == eos)
        tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)  # (B, T + t + 1)
        new = nxt.unsqueeze(1)  # (B, 1): what the cache has not read yet
        if eos is not None and bool(done.all()):
            break
    return tokens


__all__ = ["TOP_P_TOLERANCE", "check_top_k", "check_top_p", "generate", "next_token_distribution", "top_k_filter",
           "top_p_filter"]
