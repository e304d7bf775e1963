"""Numbers that chapters quote in prose without printing them (e.g. in exercises)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def markdown(name: str) -> str:
    nb = json.loads((ROOT / "book" / name).read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_chapter_2_exercise_3_is_the_divide_by_3_slip():
    """The 'wrong hand calculation' of exercise 3: right scores, weights scaled by 1/3, not 1/sqrt(3)."""
    X = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], dtype=torch.float64)
    W_K = torch.tensor([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6], [0.3, 0.5, 0.7]], dtype=torch.float64)
    S = (X @ X) @ (X @ W_K).T  # Q = X W_Q with W_Q = X
    wrong = torch.softmax(S / 3, dim=-1)[0]
    right = torch.softmax(S / math.sqrt(3), dim=-1)[0]
    text = markdown("chapter_02_attention_scoring.ipynb")
    scores = ", ".join(f"{x:.4f}" for x in S[0].tolist())
    weights = ", ".join(f"{x:.3f}" for x in wrong.tolist())
    assert f"${scores}$" in text and f"${weights}$" in text
    assert not torch.allclose(wrong, right, atol=1e-3)  # the slip is visible at the printed precision


def stored_outputs(name: str) -> str:
    nb = json.loads((ROOT / "book" / name).read_text())
    return "\n".join(
        "".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    )


def test_chapter_4_captions_quote_the_printed_numbers():
    """Figures 4.1 and 4.2 quote numbers that the notebook prints; a re-run that changes them must fail here."""
    text, out = markdown("chapter_04_self_attention.ipynb"), stored_outputs("chapter_04_self_attention.ipynb")
    counts = dict(re.findall(r"(fruit|company)\s*: \d+ sentences; apple moves toward the food words\s+in (\d+)", out))
    totals = dict(re.findall(r"(fruit|company)\s*: (\d+) sentences", out))
    company_ok = int(totals["company"]) - int(counts["company"])
    assert f"{company_ok} of the {totals['company']} company sentences" in text
    assert f"{counts['fruit']} of the {totals['fruit']} fruit sentences" in text
    flat = " ".join(text.split())
    weights = re.search(r"apple in 'the apple and the orange'.*?apple's weights: the ([\d.]+), apple ([\d.]+)", out, re.S)
    assert f"get {weights.group(2)} each, while the little words get {weights.group(1)} each" in flat
    assert f"gave orange the same weight as itself, {weights.group(2)}" in flat
    phone = re.search(r"apple in 'the apple and the phone'.*?apple's weights: .*?phone ([\d.]+)", out, re.S)
    assert f"it gave phone the same {phone.group(1)}" in flat and phone.group(1) == weights.group(2)
    one_head = re.search(r"ONE head on the whole query:\s+dot products \[.*\], weights \[([\d.]+), ([\d.]+), ([\d.]+)\]", out)
    a, b, c = (f"{float(x):.2f}" for x in one_head.groups())
    assert f"{a}, {b} and {c} to keys 1, 2 and 3" in flat


def test_chapter_4_apple_ties_because_of_its_dot_products():
    """Section 4.3 explains apple's tie by its dot products: 0.5 with apple, orange and phone alike."""
    text, out = markdown("chapter_04_self_attention.ipynb"), stored_outputs("chapter_04_self_attention.ipynb")
    dots = re.search(r"apple's dot product with \{'apple': ([\d.]+), 'orange': ([\d.]+), 'phone': ([\d.]+)", out)
    assert dots and len(set(dots.groups())) == 1, "the three dot products should tie"
    flat = " ".join(text.split())
    assert f"the same {dots.group(1)} for apple, orange and phone alike" in flat
    # the claim itself, from the chapter's vectors: apple = (0.5, 0.5), orange = (0.9, 0.1), phone = (0.1, 0.9)
    apple, orange, phone = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    assert float(apple @ apple) == pytest.approx(float(apple @ orange)) == pytest.approx(float(apple @ phone))
    assert "both lie on the food axis" not in flat


def test_chapter_4_convolution_path_length_is_2n_over_m_minus_1():
    """Section 4.6 and Figure 4.6: a kernel of size m widens the reach by (m - 1)/2 per side and layer."""
    text, out = markdown("chapter_04_self_attention.ipynb"), stored_outputs("chapter_04_self_attention.ipynb")
    reach = {int(layers): int(n) for layers, n in re.findall(r"CNN, (\d+) layers?.*?depends on\s+(\d+) of", out)}
    m = reach[1]                                    # one layer sees m inputs
    assert all(reach[L] == 1 + L * (m - 1) for L in reach), reach   # grows by m - 1 per layer
    distance = 31 - 15                              # from output 15 to the last of 32 positions
    layers = 2 * distance / (m - 1)
    flat = " ".join(text.split())
    assert f"$2 \\cdot {distance}/(m - 1) = {layers:.0f}$ layers" in flat
    assert "$2n/(m-1)$ layers" in flat and "n/(k-1)" not in flat
    assert f"{reach[1]}, {reach[2]} and {reach[4]} positions for 1, 2 and 4 layers" in flat


def test_appendix_counts_occurrences_and_quotes_the_smallest():
    """The appendix's sense counts are occurrences (with sentences in parentheses); its caption
    quotes the smallest training count of a sense."""
    text, out = markdown("appendix_corpus.ipynb"), stored_outputs("appendix_corpus.ipynb")
    rows = re.findall(r"(\w+) ([\d,]+) \(([\d,]+)\)", out.split("in the training split: occurrences (sentences)")[1])
    counts = {sense: (int(n.replace(",", "")), int(s.replace(",", ""))) for sense, n, s in rows}
    assert len(counts) == 12 and all(n >= s for n, s in counts.values())
    assert any(n > s for n, s in counts.values()), "some sense occurs twice in a sentence"
    smallest = min(n for n, _ in counts.values())
    flat = " ".join(text.split())
    assert smallest >= 60 and "at least 60 times each in training" in flat
    assert "training sentences with" not in out


def cells(name: str) -> list[dict]:
    return json.loads((ROOT / "book" / name).read_text())["cells"]


def cell_output(cell: dict) -> str:
    """Printed text and displayed text (a progress line is displayed, then updated in place)."""
    parts = []
    for o in cell.get("outputs", []):
        if "text" in o:
            parts.append("".join(o["text"]))
        elif "text/plain" in o.get("data", {}) and "image/png" not in o["data"]:
            parts.append("".join(o["data"]["text/plain"]) + "\n")
    return "".join(parts)


def code_cell_with(nb_cells: list[dict], snippet: str) -> dict:
    found = [c for c in nb_cells if c["cell_type"] == "code" and snippet in "".join(c["source"])]
    assert len(found) == 1, f"expected one code cell containing {snippet!r}, found {len(found)}"
    return found[0]


CHAPTER_3 = "chapter_03_seq2seq_attention.ipynb"


def test_chapter_3_figure_3_5_names_the_deciding_words_of_the_sentences_it_shows():
    """Figure 3.5's caption lists the words that decide each sense; they must be words of
    the four probe sentences drawn (printed above it), not of other probes."""
    nb = cells(CHAPTER_3)
    caption = next("".join(c["source"]) for c in nb if "".join(c["source"]).startswith("*Figure 3.5"))
    inside = re.search(r"not to the words? that decides? its sense \((.*?)\)\.", " ".join(caption.split()))
    assert inside, "Figure 3.5's caption should name the deciding words in parentheses"
    words = re.findall(r'"([^"]+)"', inside.group(1))
    assert len(words) >= 4, words
    out = cell_output(code_cell_with(nb, "shown_words = "))
    sources = [line.split(":", 2)[-1].split("->")[0].split() for line in out.splitlines() if "->" in line]
    assert len(sources) == 4, out
    for word in words:
        assert any(word in s for s in sources), f"{word!r} is in none of the sentences Figure 3.5 draws"


def test_chapter_3_attention_table_says_how_many_probes_it_averages():
    """The table of where the attention goes averages a slice of each sense's probes; the
    prose names the size of that slice."""
    nb = cells(CHAPTER_3)
    code = "".join(code_cell_with(nb, "def attention_at_the_word").get("source"))
    sliced = re.search(r"for s, _ in items\[:(\d+)\]", code)
    assert sliced, "the attention table should average a fixed slice of the probes"
    text = " ".join(markdown(CHAPTER_3).split())
    assert f"each of the first {sliced.group(1)} probe sentences of each sense" in text


def test_chapter_3_stored_outputs_are_those_of_its_code():
    """Two cells whose prose depends on what they print: the training cell's epoch caps,
    and the pooled lines of the cue table ("the last lines"). An output stored before the
    code changed fails here; re-executing the chapter fixes it."""
    nb = cells(CHAPTER_3)
    train = code_cell_with(nb, "plain_epochs = ")
    source, out = "".join(train["source"]), cell_output(train)
    max_epochs = int(re.search(r"max_epochs = [\d.]+, (\d+)", source).group(1))
    plain_cap = int(re.search(r"plain_epochs = (\d+) \* max_epochs", source).group(1)) * max_epochs
    caps = dict(re.findall(r"^(.*?): \[[#.]+\] \d+/\d+ batches, epoch \d+/(\d+)", out, re.M))
    assert caps, "the training cell should print its progress lines"
    expected = {"with attention": max_epochs, "attention, bidirectional": max_epochs, "without attention": plain_cap}
    assert {name: int(cap) for name, cap in caps.items()} == expected
    cue = code_cell_with(nb, "cue_probes = corpus.cue_probes")
    pooled = re.findall(r"^\s*(one-directional|bidirectional): cue before .*, only after ", cell_output(cue), re.M)
    assert sorted(pooled) == ["bidirectional", "one-directional"], "the cue cell's pooled lines are missing"
    assert "(the last lines)" in markdown(CHAPTER_3)


def test_chapter_5_prose_numbers_that_are_not_printed():
    """Numbers of chapter 5's prose that no cell prints: the FFN's share of an encoder block,
    the attention biases of the base model, the Xavier spread at the paper's vocabulary, the
    cache size per position; each is computed here from course_lib's modules or the formula."""
    from course_lib.transformer import VASWANI_2017, TransformerEncoderBlock, build_transformer, count_parameters

    flat = " ".join(markdown("chapter_05_transformer.ipynb").split())
    base = VASWANI_2017["base"]
    d, ff, heads, blocks = base["num_hiddens"], base["ffn_num_hiddens"], base["num_heads"], base["num_blks"]
    with torch.device("meta"):
        blk = TransformerEncoderBlock(num_hiddens=d, ffn_num_hiddens=ff, num_heads=heads, dropout=0.0)
        share = count_parameters(blk.ffn) / count_parameters(blk)
        kwargs = dict(tie_weights=True, shared_embedding=True)
        with_bias = count_parameters(build_transformer(37000, 37000, **base, use_bias=True, **kwargs))
        without = count_parameters(build_transformer(37000, 37000, **base, **kwargs))
    assert abs(share - 2 / 3) < 0.01 and "the FFN holds two thirds of an encoder block's parameters" in flat
    assert f"add {with_bias - without:,}" in flat                        # 36,864: 18 attention layers x 4 x 512
    torch.manual_seed(0)                                                 # the library's draw for a (V, d) embedding
    emb = build_transformer(37000, 8, num_hiddens=d, ffn_num_hiddens=8, num_heads=1, num_blks=1,
                            dropout=0.0).encoder.embedding.weight
    spread = float(emb.detach().std()) * math.sqrt(d)
    assert abs(spread - math.sqrt(2 * d / (37000 + d))) < 0.005
    assert f"would have a spread of {spread:.2f}" in flat
    assert f"$2 \\times {blocks} \\times {d} = {2 * blocks * d:,}$ numbers per generated position" \
        .replace(",", "{,}") in flat


def test_chapter_7_prose_quotes_the_printed_counts():
    """Section 7.8's memory figures and section 7.11's parameter counts are quoted from the printout."""
    name = "chapter_07_decoder_only.ipynb"
    flat, out = " ".join(markdown(name).split()), stored_outputs(name)
    weights = re.search(r"weights (\d+) MiB", out).group(1)
    multi_batch = re.search(r"12 \(multi-head\)\s+\d+ KiB\s+\d+ MiB\s+(\d+) MiB", out).group(1)
    assert f"({multi_batch} MiB) is more than twice the weights ({weights} MiB)" in flat
    assert int(multi_batch) > 2 * int(weights)
    for count in ("124,439,808", "6,738,415,616"):
        assert count in out
    assert "124,439,808" in flat
    per_block = re.search(r"GPT-2 small: .*?blocks of ([\d,]+) parameters", out).group(1)
    assert f"{per_block} per block" in flat
    held = re.search(r"bytes held by the cache after .*?\.\.\. \[(\d+), (\d+)\]", out)
    assert held.group(1) == held.group(2) == str(7 * 4 * 2 * 64 * 4)   # 7 positions x 4 blocks x K,V x 64 x float32
