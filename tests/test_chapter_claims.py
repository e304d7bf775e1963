"""Numbers that chapters quote in prose without printing them (e.g. in exercises)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    import re

    text, out = markdown("chapter_04_self_attention.ipynb"), stored_outputs("chapter_04_self_attention.ipynb")
    counts = dict(re.findall(r"(fruit|company)\s*: \d+ sentences; apple moves toward the food words in (\d+)", out))
    totals = dict(re.findall(r"(fruit|company)\s*: (\d+) sentences", out))
    company_ok = int(totals["company"]) - int(counts["company"])
    assert f"{company_ok} of the {totals['company']} company sentences" in text
    assert f"{counts['fruit']} of the {totals['fruit']} fruit sentences" in text
    flat = " ".join(text.split())
    weights = re.search(r"apple in 'the apple and the orange'.*apple's weights: the ([\d.]+), apple ([\d.]+)", out)
    assert f"get {weights.group(2)} each, while the little words get {weights.group(1)} each" in flat
    one_head = re.search(r"ONE head on the whole query: dot products \[.*\] weights \[([\d.]+), ([\d.]+), ([\d.]+)\]", out)
    a, b, c = (f"{float(x):.2f}" for x in one_head.groups())
    assert f"{a}, {b} and {c} to keys 1, 2 and 3" in flat
