"""An attention explorer for the book's pages: a trained model's weights, sentence by sentence.

A static heatmap shows one sentence, one block, one head. ``attention_explorer`` puts all
the weights a chapter computed for a set of sentences into one notebook output that the
reader can browse in the online book, without a kernel: choose a sentence, a kind of
attention (for an encoder–decoder model: encoder self-attention, decoder
self-attention, cross-attention), a block and a head, then point at a token of the
query side (hover with a mouse, tap on a phone, or tab to it and move with the arrow
keys). The explorer draws a line from it to every token of the key side, as strong as
the weight it gives that token, tints the token, and prints the weight (rounded to
``digits`` digits) next to it.

**Self-contained.** The output is one block of HTML with its CSS, its data (a JSON
``<script>`` element) and a small script inlined: no library, nothing fetched from the
network (no CDN, no web font), so it works in the built book, in Jupyter and Colab, and
in static views of the notebook. Several explorers on one page do not interfere: each
has its own id, its styles are scoped to it, and its script defines no global name.
(bertviz, the well-known tool for this, loads d3 and jQuery from a CDN through
require.js, and reacts to the mouse only.)

**Testing contract.** The root element has the class ``attention-view`` and records
what is shown in ``data-sentence``, ``data-kind``, ``data-block``, ``data-head`` and
``data-query`` (0-based). Every token is an element with ``data-token-index`` and
``data-side`` ("query" or "key"); each key token carries ``data-weight``, the weight the
selected query token gives it, as printed. The weights computed in the notebook are
exported, to 6 decimals, in the output's metadata under ``METADATA_KEY`` (see
``AttentionExplorer.export``), so that a test can compare the page with the notebook.

**Rounding and size.** Each row of weights is rounded to ``digits`` decimals so that it still
sums to exactly one (largest remainders: every entry is its value rounded down or up,
so it is off by less than ``10 ** -digits``). On the page each rounded weight is an
integer written with two characters of a 64-letter alphabet (``encode_weights``; more
characters above 3 digits), about a third of the bytes of a JSON list of numbers.

Shapes: for each sentence and kind, weights of shape ``(L, H, Tq, Tk)`` (blocks, heads,
query tokens, key tokens); a single block or head may drop its axis: ``(H, Tq, Tk)`` or
``(Tq, Tk)``.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["AttentionExplorer", "attention_explorer", "decode_weights", "encode_weights", "round_rows",
           "METADATA_KEY", "MAX_BYTES"]

# Key of the output's metadata that holds the exported weights.
METADATA_KEY = "course_lib/attention_explorer"
# The largest explorer (bytes of HTML) the book's pages should carry.
MAX_BYTES = 300_000
# How far a row of weights may be from summing to one before it is refused.
ROW_SUM_TOLERANCE = 1e-3

_counter = itertools.count()
# The page stores each rounded weight (an integer from 0 to 10**digits) as a few characters
# of this alphabet, most significant first: 2 characters for up to 3 digits.
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _width(digits: int) -> int:
    """Characters per weight: the fewest with 64**width > 10**digits."""
    width = 1
    while 64 ** width <= 10 ** digits:
        width += 1
    return width


def encode_weights(ints: np.ndarray, digits: int) -> str:
    """Integers in [0, 10**digits] as one string, ``_width(digits)`` characters each (row-major)."""
    width, flat = _width(digits), np.asarray(ints, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() > 10 ** digits):
        raise ValueError(f"weights to encode must be integers in [0, {10 ** digits}]")
    chars = [flat // 64 ** (width - 1 - k) % 64 for k in range(width)]   # most significant first
    return "".join(ALPHABET[c] for group in zip(*chars) for c in group) if flat.size else ""


def decode_weights(text: str, digits: int) -> list[int]:
    """The inverse of ``encode_weights`` (what the page's script does)."""
    width, value = _width(digits), {c: k for k, c in enumerate(ALPHABET)}
    out = []
    for start in range(0, len(text), width):
        v = 0
        for c in text[start:start + width]:
            v = 64 * v + value[c]
        out.append(v)
    return out


def _as_weights(w: Any, where: str) -> np.ndarray:
    """``w`` as a float64 array of shape (L, H, Tq, Tk)."""
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().double().numpy()
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: attention weights must be a tensor or an array of numbers; "
                        f"got {type(w).__name__}") from err
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"{where}: attention weights must have shape (L, H, Tq, Tk), (H, Tq, Tk) "
                         f"or (Tq, Tk); got shape {arr.shape}")
    while arr.ndim < 4:
        arr = arr[None]
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: attention weights must be finite; got NaN or infinity")
    if (arr < 0).any():
        raise ValueError(f"{where}: attention weights must be >= 0; got {arr.min():g}")
    sums = arr.sum(-1)
    worst = np.unravel_index(np.abs(sums - 1).argmax(), sums.shape)
    if abs(sums[worst] - 1) > ROW_SUM_TOLERANCE:
        raise ValueError(f"{where}: each row of attention weights (a query's weights over the keys) "
                         f"must sum to one; block {worst[0]}, head {worst[1]}, query {worst[2]} "
                         f"sums to {sums[worst]:.6f}")
    return arr


def round_rows(weights: np.ndarray, digits: int) -> np.ndarray:
    """Integers ``weights * 10**digits``, each row rounded so that it sums to ``10**digits``.

    Every entry is its scaled value rounded down or up (largest remainders first), so it
    differs from ``weights`` by less than ``10**-digits``. ``weights``: (..., Tk), rows
    summing to one.
    """
    scale = 10 ** digits
    scaled = weights / weights.sum(-1, keepdims=True) * scale
    low = np.floor(scaled).astype(np.int64)
    short = scale - low.sum(-1)                                   # (...,) units to hand out
    order = np.argsort(-(scaled - low), axis=-1, kind="stable")   # largest remainders first
    ranks = np.argsort(order, axis=-1, kind="stable")             # each entry's place in that order
    return low + (ranks < short[..., None])


class AttentionExplorer:
    """One explorer: its HTML (``html``, shown by Jupyter through ``_repr_html_``) and the
    weights it shows (``export``, also written to the output's metadata)."""

    def __init__(self, html_text: str, export: dict):
        self.html = html_text
        self.export = export

    @property
    def size(self) -> int:
        """Bytes of HTML the explorer adds to a page."""
        return len(self.html.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/html": self.html, "text/plain": repr(self)}
        return data, {METADATA_KEY: self.export}

    def __repr__(self) -> str:
        e = self.export
        return (f"<attention explorer: {len(e['sentences'])} sentences, "
                f"{', '.join(k['name'] for k in e['kinds'])}; {self.size / 1000:.0f} kB>")


def _tokens_of(sentence: Mapping, k: int, sides: set[str]) -> dict[str, list[str]]:
    tokens = sentence.get("tokens")
    if isinstance(tokens, Mapping):
        out = {side: tokens[side] for side in tokens}
    elif isinstance(tokens, Sequence) and not isinstance(tokens, str):
        out = {"tokens": tokens}
    else:
        raise TypeError(f"sentence {k}: 'tokens' must be a list of strings or a dict "
                        f"{{side: list of strings}}; got {type(tokens).__name__}")
    missing = sides - set(out)
    if missing:
        raise ValueError(f"sentence {k}: no tokens for side(s) {sorted(missing)}; "
                         f"it has {sorted(out)}")
    for side, toks in out.items():
        if isinstance(toks, str) or not all(isinstance(t, str) for t in toks) or len(toks) == 0:
            raise ValueError(f"sentence {k}: tokens of side {side!r} must be a non-empty list of "
                             f"strings; got {toks!r}"[:300])
    return {side: list(map(str, toks)) for side, toks in out.items()}


def attention_explorer(
    sentences: Sequence[Mapping],
    kinds: Mapping[str, tuple[str, str]] | None = None,
    *,
    title: str = "",
    digits: int = 3,
    max_bytes: int = MAX_BYTES,
) -> AttentionExplorer:
    """An interactive explorer of attention weights, as one self-contained HTML output.

    ``sentences``: a list of dicts, one per sentence, with

    * ``"tokens"``: the tokens, a list of strings (for self-attention), or a dict
      ``{side: tokens}`` for models with several sequences (``{"source": [...],
      "target": [...]}``);
    * ``"weights"``: the weights, an array or tensor ``(L, H, Tq, Tk)`` (or ``(H, Tq,
      Tk)``, ``(Tq, Tk)``), or a dict ``{kind: weights}``, one per kind of attention;
    * optional ``"label"`` (the sentence's name in the menu; default: its tokens) and
      ``"focus"`` (index of the query token selected first; default 0).

    ``kinds``: ``{name: (query side, key side)}``, in the order of the menu, e.g.
    ``{"encoder self-attention": ("source", "source"), "cross-attention": ("target",
    "source")}``. Default: one kind, ``"self-attention"``, over ``"tokens"``. Each kind
    must have the same number of blocks and heads in every sentence; the query side has
    ``Tq`` tokens and the key side ``Tk``.

    ``digits``: decimals shown (1 to 6); ``max_bytes``: refuse an explorer larger than
    this (choose fewer sentences or digits). Returns an ``AttentionExplorer``; as the
    last expression of a notebook cell it shows itself.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 6:
        raise ValueError(f"digits must be an int from 1 to 6; got {digits!r}")
    if isinstance(sentences, (str, Mapping)) or not isinstance(sentences, Sequence) or len(sentences) == 0:
        raise ValueError(f"sentences must be a non-empty list of dicts (tokens, weights); "
                         f"got {type(sentences).__name__}")
    if kinds is None:
        kinds = {"self-attention": ("tokens", "tokens")}
    if not isinstance(kinds, Mapping) or len(kinds) == 0:
        raise ValueError(f"kinds must be a non-empty dict {{name: (query side, key side)}}; got {kinds!r}")
    for name, sides in kinds.items():
        if not (isinstance(sides, (tuple, list)) and len(sides) == 2 and all(isinstance(s, str) for s in sides)):
            raise ValueError(f"kind {name!r}: expected (query side, key side), two strings; got {sides!r}")
    sides_needed = {s for pair in kinds.values() for s in pair}
    shapes: dict[str, tuple[int, int]] = {}
    page_sentences, export_sentences = [], []
    for k, sentence in enumerate(sentences):
        if not isinstance(sentence, Mapping):
            raise TypeError(f"sentence {k}: expected a dict with 'tokens' and 'weights'; "
                            f"got {type(sentence).__name__}")
        tokens = _tokens_of(sentence, k, sides_needed)
        weights = sentence.get("weights")
        if weights is None:
            raise ValueError(f"sentence {k}: no 'weights'")
        if not isinstance(weights, Mapping):
            if len(kinds) != 1:
                raise ValueError(f"sentence {k}: with {len(kinds)} kinds, 'weights' must be a dict "
                                 f"{{kind: weights}} with keys {list(kinds)}")
            weights = {next(iter(kinds)): weights}
        if set(weights) != set(kinds):
            raise ValueError(f"sentence {k}: weights for kinds {sorted(weights)}, expected {sorted(kinds)}")
        page_w, export_w = [], []
        for name, (q_side, k_side) in kinds.items():
            arr = _as_weights(weights[name], f"sentence {k}, {name}")
            L, H, Tq, Tk = arr.shape
            if (Tq, Tk) != (len(tokens[q_side]), len(tokens[k_side])):
                raise ValueError(f"sentence {k}, {name}: weights have {Tq} queries x {Tk} keys, but the "
                                 f"{q_side!r} side has {len(tokens[q_side])} tokens and the {k_side!r} "
                                 f"side {len(tokens[k_side])}")
            if shapes.setdefault(name, (L, H)) != (L, H):
                raise ValueError(f"sentence {k}, {name}: {L} blocks x {H} heads, but sentence 0 has "
                                 f"{shapes[name][0]} x {shapes[name][1]}; every sentence needs the same")
            rounded = round_rows(arr, digits)                      # (L, H, Tq, Tk) integers
            page_w.append([[encode_weights(rounded[b, h], digits) for h in range(H)] for b in range(L)])
            export_w.append(np.round(arr, 6).tolist())
        focus = sentence.get("focus", 0)
        first_query = tokens[next(iter(kinds.values()))[0]]
        if isinstance(focus, bool) or not isinstance(focus, (int, np.integer)) or not 0 <= focus < len(first_query):
            raise ValueError(f"sentence {k}: focus must be a query token index in [0, {len(first_query)}); "
                             f"got {focus!r}")
        label = str(sentence.get("label") or " ".join(tokens[next(iter(kinds.values()))[0]]))
        page_sentences.append({"label": label, "tokens": tokens, "focus": int(focus), "w": page_w})
        export_sentences.append({"label": label, "tokens": tokens, "weights": export_w})
    kind_list = [{"name": n, "query": q, "key": kk, "blocks": shapes[n][0], "heads": shapes[n][1]}
                 for n, (q, kk) in kinds.items()]
    payload = json.dumps({"digits": digits, "width": _width(digits), "alphabet": ALPHABET, "kinds": kind_list, "sentences": page_sentences},
                         separators=(",", ":"), ensure_ascii=True)
    uid = f"av-{hashlib.sha1(payload.encode()).hexdigest()[:10]}-{next(_counter)}"
    text = _render(uid, title, payload)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(f"the explorer would add {size:,} bytes to the page, more than max_bytes="
                         f"{max_bytes:,}: choose fewer sentences, blocks or heads, or fewer digits")
    return AttentionExplorer(text, {"digits": digits, "kinds": kind_list, "sentences": export_sentences})


def _render(uid: str, title: str, payload: str) -> str:
    # "</" cannot end the JSON's script element early: JSON allows "<\/".
    payload = payload.replace("</", "<\\/")
    heading = f'<div class="av-title">{html.escape(title)}</div>' if title else ""
    return (_TEMPLATE.replace("__UID__", uid).replace("__TITLE__", heading)
            .replace("__DATA__", payload).replace("__CSS__", _CSS.replace("#ROOT", f"#{uid}"))
            .replace("__JS__", _JS.replace("__UID__", uid)))


_TEMPLATE = """<div class="attention-view" id="__UID__" data-sentence="0" data-kind="0" data-block="0" \
data-head="0" data-query="0">
<style>__CSS__</style>
__TITLE__<div class="av-controls"></div>
<div class="av-help">Point at a token on the left (hover, tap, or Tab then the arrow keys): the lines \
and numbers show the weights it gives the tokens on the right.</div>
<div class="av-scroll"><div class="av-grid"></div></div>
<noscript>The attention explorer needs JavaScript.</noscript>
<script type="application/json" class="av-data">__DATA__</script>
<script>__JS__</script>
</div>"""

# Styles, scoped to one explorer (#ROOT becomes its id). The explorer sets its own
# background and text colours, light or dark after the page's theme (the book's
# html[data-theme=dark], JupyterLab's body[data-jp-theme-light=false]): the book shows
# HTML outputs on a light grey box even in dark mode, so inheriting colours would mix the
# two. The tint of a weight is the accent at up to 55 % (light) or 80 % (dark) opacity,
# which keeps the token's text above WCAG's 4.5 : 1 contrast.
_CSS = """
#ROOT{--av-accent:30,100,200;--av-alpha:0.55;--av-line:#1e64c8;--av-muted:#666;--av-border:#ccc;--av-sel:#ffe08a;\
--av-sel-text:#000;--av-bg:#fff;--av-text:#222;background:var(--av-bg);color:var(--av-text);font-family:inherit;font-size:14px;line-height:1.2;margin:0.5em 0;max-width:100%;\
box-sizing:border-box;border:1px solid var(--av-border);border-radius:4px;padding:6px}
html[data-theme=dark] #ROOT,body[data-jp-theme-light=false] #ROOT{--av-accent:20,90,200;--av-alpha:0.8;\
--av-line:#6eaaff;--av-muted:#aaa;--av-border:#555;--av-sel:#7a5c00;--av-sel-text:#fff;--av-bg:#1b1f24;--av-text:#dde3ea}
#ROOT .av-title{font-weight:bold;margin-bottom:4px}
#ROOT .av-controls{display:flex;flex-wrap:wrap;gap:4px 12px;margin-bottom:4px}
#ROOT .av-controls label{display:flex;align-items:center;gap:4px;max-width:100%}
#ROOT select{font:inherit;max-width:100%;min-width:0;color:inherit;background:transparent;\
border:1px solid var(--av-border);border-radius:3px;padding:2px}
#ROOT select option{color:#000;background:#fff}
#ROOT .av-help{color:var(--av-muted);font-size:12px;margin-bottom:4px}
#ROOT .av-scroll{overflow-x:auto;max-width:100%}
#ROOT .av-grid{display:grid;grid-template-columns:max-content 64px max-content;width:max-content}
#ROOT .av-col{display:flex;flex-direction:column;outline:none}
#ROOT .av-head{height:22px;font-size:12px;color:var(--av-muted);white-space:nowrap}
#ROOT .av-tok{height:24px;box-sizing:border-box;display:flex;align-items:center;white-space:nowrap;\
padding:0 6px;border-radius:3px;font-family:monospace}
#ROOT .av-q{justify-content:flex-end;cursor:pointer;user-select:none;-webkit-user-select:none;\
touch-action:manipulation}
#ROOT .av-q[aria-selected=true]{background:var(--av-sel);color:var(--av-sel-text);font-weight:bold}
#ROOT .av-q:focus-visible{outline:2px solid var(--av-line);outline-offset:-2px}
#ROOT .av-k{gap:6px}
#ROOT .av-k .av-word{padding:0 4px;border-radius:3px}
#ROOT .av-k .av-val{font-size:12px;color:var(--av-muted);min-width:3.5em}
#ROOT svg{display:block}
#ROOT svg line{stroke:var(--av-line)}
"""

# The explorer's script: one closure per explorer (no global name), found by its id.
_JS = r"""(function () {
  var root = document.getElementById('__UID__');
  if (!root || root.getAttribute('data-ready')) return;   // shown twice: set up once
  root.setAttribute('data-ready', '1');
  var data = JSON.parse(root.querySelector('script.av-data').textContent);
  var scale = Math.pow(10, data.digits), ROW = 24, TOP = 22, GAP = 64, width = data.width;
  function weightAt(text, index) {   // the index-th weight of a block-head's string, as a number
    var v = 0;
    for (var c = index * width; c < (index + 1) * width; c++) v = 64 * v + data.alphabet.indexOf(text.charAt(c));
    return v / scale;
  }
  var state = {sentence: 0, kind: 0, block: 0, head: 0, query: 0};
  var grid = root.querySelector('.av-grid'), controls = root.querySelector('.av-controls');
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function menu(name, options, onchange) {
    var label = el('label', null, name + ' '), select = el('select');
    select.setAttribute('data-role', name.toLowerCase());
    options.forEach(function (text, i) { var o = el('option', null, text); o.value = i; select.appendChild(o); });
    select.addEventListener('change', function () { onchange(+select.value); });
    label.appendChild(select);
    controls.appendChild(label);
    return select;
  }
  function numbers(n) { var a = []; for (var i = 1; i <= n; i++) a.push(String(i)); return a; }
  var sentenceMenu = menu('Sentence', data.sentences.map(function (s, i) { return (i + 1) + '. ' + s.label; }),
    function (v) { state.sentence = v; state.query = data.sentences[v].focus; build(); });
  if (data.kinds.length > 1)
    menu('Attention', data.kinds.map(function (k) { return k.name; }), function (v) {
      state.kind = v; state.block = Math.min(state.block, data.kinds[v].blocks - 1);
      state.head = Math.min(state.head, data.kinds[v].heads - 1); state.query = 0; build(); });
  var blockMenu = null, headMenu = null;
  function rebuildNumberMenus() {
    var k = data.kinds[state.kind];
    [blockMenu, headMenu].forEach(function (m) { if (m) controls.removeChild(m.parentNode); });
    blockMenu = headMenu = null;
    if (k.blocks > 1) { blockMenu = menu('Block', numbers(k.blocks), function (v) { state.block = v; draw(); }); blockMenu.value = state.block; }
    if (k.heads > 1) { headMenu = menu('Head', numbers(k.heads), function (v) { state.head = v; draw(); }); headMenu.value = state.head; }
  }
  var queries = [], keys = [], lines = [], pointer = [null, null];   // pointer: last mouse position seen
  function build() {
    var s = data.sentences[state.sentence], k = data.kinds[state.kind];
    var qt = s.tokens[k.query], kt = s.tokens[k.key];
    if (state.query >= qt.length) state.query = 0;
    rebuildNumberMenus();
    grid.textContent = '';
    var qcol = el('div', 'av-col'), svgbox = el('div'), kcol = el('div', 'av-col');
    qcol.setAttribute('role', 'listbox');
    qcol.setAttribute('aria-label', 'query tokens (' + k.query + ')');
    qcol.appendChild(el('div', 'av-head', 'query (' + k.query + ')'));
    kcol.appendChild(el('div', 'av-head', 'key (' + k.key + ')'));
    queries = qt.map(function (t, i) {
      var q = el('div', 'av-tok av-q', t);
      q.setAttribute('data-token-index', i); q.setAttribute('data-side', 'query');
      q.setAttribute('role', 'option'); q.tabIndex = -1;
      // Hover selects, but only when the mouse really moves: the browser also sends mouse
      // events when the page scrolls under a resting pointer, which must not undo a choice
      // made with the keyboard.
      q.addEventListener('mousemove', function (ev) {
        var moved = ev.clientX !== pointer[0] || ev.clientY !== pointer[1];
        pointer = [ev.clientX, ev.clientY];
        if (moved && state.query !== i) select(i, false);
      });
      q.addEventListener('click', function () { select(i, true); });
      q.addEventListener('keydown', function (ev) {
        var to = {ArrowDown: i + 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowLeft: i - 1, Home: 0, End: qt.length - 1}[ev.key];
        if (to === undefined) return;
        ev.preventDefault();
        select(Math.max(0, Math.min(qt.length - 1, to)), true);
      });
      qcol.appendChild(q);
      return q;
    });
    keys = kt.map(function (t, j) {
      var row = el('div', 'av-tok av-k'), word = el('span', 'av-word', t), val = el('span', 'av-val');
      row.setAttribute('data-token-index', j); row.setAttribute('data-side', 'key');
      row.appendChild(word); row.appendChild(val);
      kcol.appendChild(row);
      return row;
    });
    var height = TOP + ROW * Math.max(qt.length, kt.length);
    svgbox.innerHTML = '<svg aria-hidden="true" width="' + GAP + '" height="' + height + '"></svg>';
    var svg = svgbox.firstChild;   // parsed as SVG: no namespace URL written here
    lines = kt.map(function (t, j) {
      var line = document.createElementNS(svg.namespaceURI, 'line');
      line.setAttribute('x1', 2); line.setAttribute('x2', GAP - 2);
      line.setAttribute('y2', TOP + ROW * j + ROW / 2);
      svg.appendChild(line);
      return line;
    });
    grid.appendChild(qcol); grid.appendChild(svgbox); grid.appendChild(kcol);
    sentenceMenu.value = state.sentence;
    draw();
  }
  function select(i, focus) {
    state.query = i;
    draw();
    if (focus) queries[i].focus();
  }
  function draw() {
    var s = data.sentences[state.sentence], k = data.kinds[state.kind];
    var nk = s.tokens[k.key].length, w = s.w[state.kind][state.block][state.head];

    queries.forEach(function (q, i) {
      var on = i === state.query;
      q.setAttribute('aria-selected', on ? 'true' : 'false');
      q.tabIndex = on ? 0 : -1;
    });
    var qy = TOP + ROW * state.query + ROW / 2;
    keys.forEach(function (key, j) {
      var v = weightAt(w, state.query * nk + j), text = v.toFixed(data.digits);
      key.setAttribute('data-weight', text);
      key.title = 'weight ' + text;
      key.querySelector('.av-val').textContent = text;
      key.querySelector('.av-word').style.background = 'rgba(var(--av-accent),calc(var(--av-alpha) * ' + v.toFixed(3) + '))';
      lines[j].setAttribute('y1', qy);
      lines[j].setAttribute('stroke-width', (0.5 + 5 * v).toFixed(2));
      lines[j].setAttribute('stroke-opacity', Math.max(v, 0.04).toFixed(3));
    });
    root.setAttribute('data-sentence', state.sentence); root.setAttribute('data-kind', state.kind);
    root.setAttribute('data-block', state.block); root.setAttribute('data-head', state.head);
    root.setAttribute('data-query', state.query);
  }
  state.query = data.sentences[0].focus;
  build();
})();"""
