"""course_lib.explorer: the attention explorer's HTML, its data and its checks.

The page itself (clicks, keys, dark mode) is tested in a real browser by
tests/test_browser.py; here, what the HTML carries: every weight, rounded so that each
row still sums to one, the testing contract's attributes, nothing fetched from the
network, and clear errors for bad input.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import torch

import course_lib.plotting
from course_lib.explorer import (MAX_BYTES, METADATA_KEY, attention_explorer, decode_weights, encode_weights,
                                 round_rows)

KINDS = {"encoder self-attention": ("source", "source"),
         "decoder self-attention": ("target", "target"),
         "cross-attention": ("target", "source")}


def weights(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=g), dim=-1)


def seq2seq_sentences(n=3, blocks=2, heads=4, seed=0):
    out = []
    for k in range(n):
        src = [f"s{j}" for j in range(3 + (k + seed) % 5)]
        tgt = [f"t{j}" for j in range(2 + (k * 3 + seed) % 4)]
        out.append({"tokens": {"source": src, "target": tgt},
                    "weights": {"encoder self-attention": weights(blocks, heads, len(src), len(src), seed=seed + k),
                                "decoder self-attention": weights(blocks, heads, len(tgt), len(tgt), seed=seed + 9 * k),
                                "cross-attention": weights(blocks, heads, len(tgt), len(src), seed=seed + 7 * k)}})
    return out


def page_data(explorer) -> dict:
    found = re.search(r'<script type="application/json" class="av-data">(.*?)</script>', explorer.html, re.S)
    assert found, "the explorer's data element"
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_reexported_from_plotting():
    assert course_lib.plotting.attention_explorer is attention_explorer


@pytest.mark.parametrize("digits", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rounded_rows_sum_to_one_and_stay_close(digits, seed):
    for shape in [(1, 1), (5, 3), (2, 4, 7, 11), (3, 1, 40)]:
        w = weights(*shape, seed=seed).double().numpy()
        before = w.copy()
        r = round_rows(w, digits)
        assert r.dtype.kind == "i" and r.shape == w.shape
        assert (r.sum(-1) == 10 ** digits).all()
        assert np.abs(r / 10 ** digits - w).max() < 10 ** -digits
        assert (r >= 0).all()
        np.testing.assert_array_equal(w, before)   # the input is left as it was


@pytest.mark.parametrize("digits", [1, 2, 3, 4, 5, 6])
def test_encoding_round_trips_every_value(digits):
    top = 10 ** digits
    values = np.unique(np.concatenate([np.arange(0, min(top, 5000) + 1), [top - 1, top],
                                       np.random.default_rng(digits).integers(0, top + 1, 500)]))
    text = encode_weights(values, digits)
    assert decode_weights(text, digits) == values.tolist()
    assert len(text) == len(values) * {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4}[digits]   # 64 ** width > 10 ** digits
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text)     # nothing that HTML or JSON would escape
    with pytest.raises(ValueError, match=r"integers in \[0, "):
        encode_weights(np.array([top + 1]), digits)


def test_rounding_of_ties_and_one_hot_rows():
    w = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    r = round_rows(w, 3)
    assert r.tolist()[1:] == [[1000, 0, 0], [500, 500, 0]]
    assert sorted(r[0].tolist()) == [333, 333, 334]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_page_carries_every_weight_rounded_and_the_export_in_full(seed):
    sentences = seq2seq_sentences(n=4, seed=seed)
    kept = [{k: v.clone() for k, v in s["weights"].items()} for s in sentences]
    ex = attention_explorer(sentences, KINDS, digits=3)
    data, export = page_data(ex), ex.export
    assert [k["name"] for k in data["kinds"]] == list(KINDS)
    assert all((k["blocks"], k["heads"]) == (2, 4) for k in data["kinds"])
    for s, shown, exported, before in zip(sentences, data["sentences"], export["sentences"], kept):
        assert shown["tokens"] == s["tokens"] == exported["tokens"]
        for k, (name, (q, key)) in enumerate(KINDS.items()):
            w = s["weights"][name]
            torch.testing.assert_close(w, before[name], rtol=0, atol=0)   # inputs unchanged
            page = np.array([[decode_weights(text, 3) for text in block] for block in shown["w"][k]])
            page = page.reshape(2, 4, len(s["tokens"][q]), len(s["tokens"][key]))
            assert (page.sum(-1) == 1000).all()                            # every row sums to one
            assert np.abs(page / 1000 - w.numpy()).max() < 1e-3
            np.testing.assert_allclose(np.array(exported["weights"][k]), w.double().numpy(), atol=5e-7)
    bundle, meta = ex._repr_mimebundle_()
    assert bundle["text/html"] == ex.html == ex._repr_html_()
    assert meta[METADATA_KEY] == export
    json.dumps(meta)   # the export can be stored in the notebook


def test_testing_contract_and_self_contained():
    ex = attention_explorer(seq2seq_sentences(), KINDS, title="A <b>title</b>")
    text = ex.html
    root = re.match(r'<div class="attention-view" id="(av-[0-9a-f]{10}-\d+)"', text)
    assert root, text[:200]
    uid = root.group(1)
    assert "http" not in text.lower() and "//" not in re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    assert not re.search(r"<(link|img|iframe)\b|src=|@import|url\(", text)
    assert "data-token-index" in text and "data-weight" in text
    assert "A &lt;b&gt;title&lt;/b&gt;" in text and "<b>title" not in text
    # styles scoped to this explorer, and the script finds it by its id
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    selectors = [rule.split("{")[0] for rule in css.split("}") if "{" in rule]
    assert selectors and all(f"#{uid}" in sel for sel in selectors), selectors
    assert f"getElementById('{uid}')" in text
    # a second explorer of the same data gets its own id
    other = attention_explorer(seq2seq_sentences(), KINDS, title="A <b>title</b>")
    assert re.match(r'<div class="attention-view" id="(av-[^"]+)"', other.html).group(1) != uid


def test_tokens_that_look_like_markup_stay_text():
    w = weights(3, 3)
    ex = attention_explorer([{"tokens": ["</script>", "<b>", "&amp;"], "weights": w, "label": "<i>x</i>"}])
    data = page_data(ex)
    assert data["sentences"][0]["tokens"]["tokens"] == ["</script>", "<b>", "&amp;"]
    assert data["sentences"][0]["label"] == "<i>x</i>"
    assert ex.html.count("</script>") == 2   # the data's and the code's own closing tags only


@pytest.mark.parametrize("shape", [(5, 5), (3, 5, 5), (2, 3, 5, 5)])
def test_a_block_or_head_axis_may_be_left_out(shape):
    ex = attention_explorer([{"tokens": list("abcde"), "weights": weights(*shape)}])
    kind = page_data(ex)["kinds"][0]
    full = (1, 1, 5, 5)[:4 - len(shape)] + shape
    assert (kind["blocks"], kind["heads"]) == full[:2]


def test_size_limit():
    many = [{"tokens": [f"w{j}" for j in range(20)], "weights": weights(4, 4, 20, 20, seed=k)} for k in range(30)]
    with pytest.raises(ValueError, match=r"bytes to the page, more than max_bytes=300,000"):
        attention_explorer(many)
    small = attention_explorer(many[:2])
    assert small.size < MAX_BYTES
    with pytest.raises(ValueError, match="max_bytes=1,000"):
        attention_explorer(many[:2], max_bytes=1000)


@pytest.mark.parametrize("sentences, kinds, match", [
    ([], None, "non-empty list"),
    ([{"tokens": ["a", "b"], "weights": weights(2, 3)}], None, r"2 queries x 3 keys, but the 'tokens' side has 2"),
    ([{"tokens": ["a", "b"], "weights": torch.full((2, 2), 0.3)}], None, "must sum to one.*sums to 0.6"),
    ([{"tokens": ["a", "b"], "weights": torch.tensor([[1.5, -0.5], [0.5, 0.5]])}], None, ">= 0"),
    ([{"tokens": ["a", "b"], "weights": torch.tensor([[float("nan"), 1], [0.5, 0.5]])}], None, "finite"),
    ([{"tokens": ["a", "b"], "weights": torch.ones(2, 2, 2, 2, 2) / 2}], None, r"shape \(L, H, Tq, Tk\)"),
    ([{"tokens": ["a", "b"]}], None, "no 'weights'"),
    ([{"tokens": [], "weights": weights(2, 2)}], None, "non-empty list of strings"),
    ([{"tokens": ["a", "b"], "weights": weights(2, 2), "focus": 2}], None, r"focus must be .* \[0, 2\); got 2"),
    ([{"tokens": ["a", "b"], "weights": weights(2, 4, 2, 2)},
      {"tokens": ["a", "b"], "weights": weights(2, 2, 2, 2)}], None, "2 blocks x 2 heads, but sentence 0 has 2 x 4"),
    ([{"tokens": {"source": ["a"]}, "weights": {}}], KINDS, r"no tokens for side\(s\) \['target'\]"),
    ([{"tokens": {"source": ["a"], "target": ["b"]}, "weights": weights(1, 1)}], KINDS, "must be a dict"),
    ([{"tokens": {"source": ["a"], "target": ["b"]}, "weights": {"cross-attention": weights(1, 1)}}], KINDS,
     "weights for kinds"),
    ([{"tokens": ["a"], "weights": weights(1, 1)}], {"x": ("tokens",)}, "two strings"),
])
def test_bad_input_says_what_was_expected(sentences, kinds, match):
    with pytest.raises(ValueError, match=match):
        attention_explorer(sentences, kinds)


def test_bad_types_and_digits():
    with pytest.raises(TypeError, match="expected a dict"):
        attention_explorer([("a", "b")])
    with pytest.raises(TypeError, match="tensor or an array of numbers"):
        attention_explorer([{"tokens": ["a"], "weights": object()}])
    for digits in (0, 7, 2.5, True):
        with pytest.raises(ValueError, match="digits must be an int from 1 to 6"):
            attention_explorer([{"tokens": ["a"], "weights": weights(1, 1)}], digits=digits)


def test_menu_labels_default_to_the_tokens():
    ex = attention_explorer([{"tokens": ["the", "bank"], "weights": weights(2, 2)},
                             {"tokens": ["x"], "weights": weights(1, 1), "label": "named"}])
    assert [s["label"] for s in page_data(ex)["sentences"]] == ["the bank", "named"]
    assert "2 sentences" in repr(ex) and html.escape("<") not in repr(ex)
