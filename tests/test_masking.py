"""Masks and the masked softmax, against d2l 1.0.3 and closed-form expectations."""

from __future__ import annotations

import pytest
import torch

from course_lib import causal_mask, local_window_mask, masked_softmax, padding_mask


@pytest.fixture
def scores():
    torch.manual_seed(0)
    return torch.randn(2, 3, 5)


@pytest.mark.parametrize("valid_lens", [None, torch.tensor([2, 5]), torch.tensor([[1, 3, 5], [2, 4, 4]])])
def test_matches_d2l_for_per_sequence_and_per_query_lengths(d2l, scores, valid_lens):
    ours = masked_softmax(scores, valid_lens)
    theirs = d2l.masked_softmax(scores.clone(), None if valid_lens is None else valid_lens.clone())
    torch.testing.assert_close(ours, theirs)


def test_masked_keys_get_exactly_zero_and_rows_sum_to_one(scores):
    w = masked_softmax(scores, torch.tensor([[1, 3, 5], [2, 4, 4]]))
    assert w[0, 0, 1:].eq(0).all() and w[0, 1, 3:].eq(0).all() and w[1, 1, 4:].eq(0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))


def test_input_is_not_modified(scores):
    before = scores.clone()
    masked_softmax(scores, torch.tensor([1, 2]))
    assert torch.equal(scores, before)  # d2l's version writes into its input; ours must not


def test_fully_masked_row_is_all_zeros_with_finite_gradients(scores):
    x = scores.clone().requires_grad_(True)
    w = masked_softmax(x, torch.tensor([0, 5]))
    assert w[0].eq(0).all() and torch.isfinite(w).all()
    torch.testing.assert_close(w[1].sum(-1), torch.ones(3))
    (w * torch.randn_like(w)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_need_no_magic_constant(dtype):
    x = (torch.randn(1, 2, 4) * 3).to(dtype)
    w = masked_softmax(x, torch.tensor([[2, 0]]))
    assert w.dtype == dtype and torch.isfinite(w).all()
    assert w[0, 0, 2:].eq(0).all() and w[0, 1].eq(0).all()
    torch.testing.assert_close(w[0, 0].float().sum(), torch.tensor(1.0), atol=1e-2, rtol=0)


def test_attn_mask_combines_with_valid_lens(scores):
    causal = causal_mask(3, 5)
    w = masked_softmax(scores, torch.tensor([4, 5]), attn_mask=causal)
    allowed = causal.unsqueeze(0) & (torch.arange(5) < torch.tensor([4, 5]).view(2, 1, 1))
    assert w.masked_select(~allowed).eq(0).all()
    expected = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    torch.testing.assert_close(w, expected)


def test_mask_helpers():
    assert padding_mask(torch.tensor([1, 3]), 2, 4).tolist() == [
        [[True, False, False, False]] * 2,
        [[True, True, True, False]] * 2,
    ]
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert local_window_mask(4, 4, 1).int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]


@pytest.mark.parametrize(
    "valid_lens, message",
    [
        (torch.tensor([1, 6]), r"valid_lens must lie in \[0, 5\]"),
        (torch.tensor([-1, 2]), r"valid_lens must lie in \[0, 5\]"),
        (torch.tensor([1, 2, 3]), r"valid_lens of shape \(B,\) must have B = 2"),
        (torch.tensor([[1, 2], [3, 4]]), r"valid_lens of shape \(B, Tq\) must be \(2, 3\)"),
        (torch.tensor([1.5, 2.0]), "whole numbers"),
        (torch.ones(2, 3, 1, dtype=torch.long), r"must be \(B,\) or \(B, Tq\)"),
    ],
)
def test_bad_valid_lens_raise_clear_errors(scores, valid_lens, message):
    with pytest.raises(ValueError, match=message):
        masked_softmax(scores, valid_lens)


def test_bad_scores_and_masks_raise_clear_errors(scores):
    with pytest.raises(ValueError, match=r"scores of shape \(B, Tq, Tk\)"):
        masked_softmax(scores[0], None)
    with pytest.raises(ValueError, match="must be boolean"):
        masked_softmax(scores, attn_mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        masked_softmax(scores, attn_mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_queries <= num_keys"):
        causal_mask(4, 3)
    with pytest.raises(ValueError, match="window must be an int >= 0"):
        local_window_mask(3, 3, -1)


def test_padding_mask_and_combine_masks_share_one_length_mask(monkeypatch):
    """Both build the length mask through one helper, so they cannot drift apart."""
    from course_lib import masking

    calls = []
    real = masking._length_mask
    monkeypatch.setattr(masking, "_length_mask", lambda *a, **k: calls.append(a) or real(*a, **k))
    lens = torch.tensor([1, 3])
    full = masking.padding_mask(lens, 2, 4)  # (B, Tq, Tk)
    compact = masking.combine_masks(torch.Size((2, 2, 4)), lens, None)  # (B, 1, Tk)
    assert len(calls) == 2
    assert compact.shape == (2, 1, 4) and torch.equal(compact.expand(2, 2, 4), full)
    per_query = torch.tensor([[0, 4], [2, 3]])
    assert torch.equal(masking.combine_masks(torch.Size((2, 2, 4)), per_query, None), masking.padding_mask(per_query, 2, 4))


def test_float_whole_lengths_are_accepted(scores):
    torch.testing.assert_close(masked_softmax(scores, torch.tensor([2.0, 5.0])), masked_softmax(scores, torch.tensor([2, 5])))
    with pytest.raises(ValueError, match="whole numbers"):
        masked_softmax(scores, torch.tensor([True, False]))


def test_no_host_synchronisation_off_the_cpu():
    """On a non-CPU device the values are not read back: meta tensors have none to read."""
    scores = torch.empty(2, 3, 5, device="meta")
    w = masked_softmax(scores, torch.empty(2, dtype=torch.long, device="meta"))
    assert w.shape == (2, 3, 5) and w.device.type == "meta"
    mask = padding_mask(torch.empty(2, 3, dtype=torch.long, device="meta"), 3, 5)
    assert mask.shape == (2, 3, 5) and mask.dtype == torch.bool
    with pytest.raises(ValueError, match=r"valid_lens of shape \(B,\) must have B = 2"):  # shapes: always
        masked_softmax(scores, torch.empty(3, dtype=torch.long, device="meta"))


def test_no_host_synchronisation_under_torch_compile(scores, monkeypatch):
    def no_sync(*args):
        raise AssertionError("host synchronisation")

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for method in ("__bool__", "item", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, method, no_sync)
    w = masked_softmax(scores, torch.tensor([[1, 3, 9], [2, 4, 4]]))  # 9 > Tk is not checked here
    monkeypatch.undo()
    assert w[0, 2].sum().item() == pytest.approx(1.0)  # a length above Tk keeps every key
