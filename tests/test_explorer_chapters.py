"""The explorers stored in chapters 3 to 7: what each page carries equals what its notebook computed.

Read from the executed notebooks (no kernel, no browser): every explorer's HTML carries
the exported weights, rounded so that each row sums to one; it stays under the size
limit; it has at least 20 sentences of the chapter's own model; and the counts that a
chapter prints next to its explorer agree with the exported weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from course_lib.explorer import MAX_BYTES, METADATA_KEY, decode_weights

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = {3: "chapter_03_seq2seq_attention.ipynb", 4: "chapter_04_self_attention.ipynb",
            5: "chapter_05_transformer.ipynb", 6: "chapter_06_bert.ipynb", 7: "chapter_07_decoder_only.ipynb"}


def explorers(name: str) -> list[tuple[str, dict, str]]:
    """(HTML, export, printed text of the cell) of every explorer output of a notebook."""
    nb = json.loads((ROOT / "book" / name).read_text())
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")
        for o in cell["outputs"]:
            if METADATA_KEY in o.get("metadata", {}):
                found.append(("".join(o["data"]["text/html"]), o["metadata"][METADATA_KEY], printed))
    return found


def with_explorers() -> list[int]:
    return [n for n, name in CHAPTERS.items() if explorers(name)]


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_chapter_has_an_explorer_of_at_least_20_sentences(number):
    found = explorers(CHAPTERS[number])
    assert found, f"chapter {number} has no attention explorer (executed)"
    assert max(len(export["sentences"]) for _, export, _ in found) >= 20


@pytest.mark.parametrize("number", list(CHAPTERS))
def test_page_carries_the_exported_weights(number):
    for html, export, _ in explorers(CHAPTERS[number]):
        assert len(html.encode()) <= MAX_BYTES
        assert "http" not in html
        data = json.loads(re.search(r'<script type="application/json" class="av-data">(.*?)</script>',
                                    html, re.S).group(1).replace("<\\/", "</"))
        scale = 10 ** data["digits"]
        assert [k["name"] for k in data["kinds"]] == [k["name"] for k in export["kinds"]]
        for shown, exported in zip(data["sentences"], export["sentences"], strict=True):
            assert shown["tokens"] == exported["tokens"]
            for k, kind in enumerate(export["kinds"]):
                w = np.array(exported["weights"][k])                       # (L, H, Tq, Tk)
                assert w.shape == (kind["blocks"], kind["heads"], len(shown["tokens"][kind["query"]]),
                                   len(shown["tokens"][kind["key"]]))
                np.testing.assert_allclose(w.sum(-1), 1, atol=1e-5)
                page = np.array([[decode_weights(t, data["digits"]) for t in block] for block in shown["w"][k]])
                page = page.reshape(w.shape)
                assert (page.sum(-1) == scale).all()
                assert np.abs(page / scale - w).max() < 1 / scale + 1e-6


def test_chapter_4_counts_agree_with_the_exported_weights():
    ((_, export, printed),) = explorers(CHAPTERS[4])
    own, little = 0, []
    for s in export["sentences"]:
        w, tokens = np.array(s["weights"][0][0][0]), s["tokens"]["tokens"]
        own += int((w.argmax(-1) == np.arange(len(tokens))).sum())
        little += [w[i, i] for i, t in enumerate(tokens) if t in {"the", "a", "an", "."}]
    words = sum(len(s["tokens"]["tokens"]) for s in export["sentences"])
    assert f"{len(export['sentences'])} sentences, {words} words; {own} of the words" in printed
    assert f"({len(little)} of the words) keep on average {np.mean(little):.3f}" in printed
