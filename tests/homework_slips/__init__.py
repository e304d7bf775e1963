"""Slip tables of the homework: for each coding question, answers students plausibly get
wrong, what the autograder's feedback must say about each, a trivial answer that the
public check must reject, and correct answers written another way (full marks).

One module per homework, named like its master notebook. Each defines

* ``SLIPS``: question -> list of ``(slip, {function: source}, words the feedback must contain)``;
  functions not given keep the master's solution;
* ``TRIVIAL``: question -> ``{function: source}``, an answer that does no real work;
* ``ALTERNATIVES``: function -> source, a correct answer written another reasonable way.

A slip's source defines every helper it needs, so that a slip in one question does not
spill into another question that calls its function.
"""
