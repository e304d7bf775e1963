"""Slip tables of the homework: for each coding question, answers students plausibly get
wrong, what the autograder's feedback must say about each, trivial answers that the
public check must reject, and correct answers written other ways (full marks).

One module per homework, named like its master notebook. Each defines

* ``SLIPS``: question -> list of ``(slip, {function: source}, words the feedback must contain)``;
  functions not given keep the master's solution. The test suite grades one submission
  per round of slips (the r-th slip of every question) with the real autograder, so keep
  their number per question bounded;
* ``MORE_SLIPS``: the same, run directly on the autograder's test files (no notebook);
* ``TRIVIAL``: question -> list of ``{function: source}``, answers that do no real work
  (a constant, always the same position, an argument ignored);
* ``ALTERNATIVES``: function -> source, a correct answer written another reasonable way;
* ``MORE_ALTERNATIVES``: list of ``{function: source}``, more correct answers (one in
  float32 per question), run directly on the autograder's test files.

A slip's source defines every helper it needs, so that a slip in one question does not
spill into another question that calls its function. ``grading.py`` holds the helpers
that every hidden test carries.
"""
