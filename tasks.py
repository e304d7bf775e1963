#!/usr/bin/env python3
"""Set up, build and test the course. Needs only Python 3.11 (standard library) to start.

    python3 tasks.py book        # build the HTML book into _build/html and serve it (Ctrl-C stops)
    python3 tasks.py test        # run the whole test suite (what CI runs)

Both create ./.venv and install everything on first use (and again whenever
requirements.txt or pyproject.toml change). On a machine without a GPU, set
COURSE_TORCH_INDEX=https://download.pytorch.org/whl/cpu before the first run: PyTorch
then comes from that index (its CPU build, about 200 MB) instead of the default one
(on Linux, the CUDA build and several GB of NVIDIA libraries).
Other commands, for authors and instructors:

    python3 tasks.py homework    # student notebooks + autograders into _build/homework/
    python3 tasks.py grade HW SUBMISSIONS...   # grade submissions, write a score report
    python3 tasks.py notebooks   # only execute and validate the notebooks (nbval)
    python3 tasks.py bench [--quick]    # benchmarks/attention.py, multihead.py, transformer.py, bert.py, tiled.py
    python3 tasks.py execute [NB ...]   # re-execute notebooks in place, top to bottom
    python3 tasks.py sync-repo-url      # copy the repository URL from _config.yml into notebooks
    python3 tasks.py figures [NB ...]   # the size of each stored figure's smallest text on the page
    python3 tasks.py robustness [NB ...] [--seeds 0 1 2]
                                 # run copies of the chapters with other values of SEED
    python3 tasks.py colab-check [NB ...] [--fresh]
                                 # run every notebook in a clean, Colab-like environment

`test`, `notebooks` and `robustness` validate under another numerical configuration than the one
`execute` stores outputs with (generic ATen kernels, MKL_CBWR=COMPATIBLE, one thread;
see VALIDATION_ENV), so that an output that depends on the kernels fails here first.
`robustness` and `colab-check` are not part of `test`: they take minutes, and
`colab-check` needs PyPI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types

# The commands live in course_tasks/, next to this file, one module per group; every name
# is also a name of this module, as before (the tests use tasks.generate_homework,
# tasks.BUILD, ...). This file's folder is put on the path even where Python leaves it
# out (python3 -I, PYTHONSAFEPATH).
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from course_tasks import book, environment, homework, robustness, testing
from course_tasks.book import (  # noqa: F401  (re-exported)
    BOOK_HOST, BOOK_PORT, DESKTOP_COLUMN_PX, MIN_FIGURE_TEXT_PX, TEXT_SIZE_KEY, BookRequestHandler, book_server,
    build_book, cmd_book, cmd_figures, figure_text_sizes, png_info, serve_book,
)
from course_tasks.environment import (  # noqa: F401  (re-exported)
    BOOK_DIR, BRANCH_LINE, BUILD, D2L, HOMEWORK_BUILD, HOMEWORK_DIR, HOMEWORK_PAGES, INSTALL_INPUTS, REPO_LINE, ROOT,
    STAMP, TORCH_INDEX_ENV, VENV, cmd_sync_repo_url, config_repo_branch, config_repo_url, ensure_chromium, ensure_venv,
    install_fingerprint, install_torch, log, notebooks, pinned, print_table, pytest_env, run, venv_python, venv_tool,
)
from course_tasks.homework import (  # noqa: F401  (re-exported)
    PUBLIC_TESTS_CELL, build_lock, cmd_grade, cmd_homework, embed_public_tests, generate_homework, grade_submissions,
    homework_fingerprint, homework_masters, notebook_tests_dir,
)
from course_tasks.robustness import (  # noqa: F401  (re-exported)
    COLAB_KERNEL, COLAB_PACKAGES, COLAB_VENV, GIT_INSTALL_SOURCE, NOTEBOOK_RUNNER, SEED_LINE, cmd_colab_check,
    cmd_robustness, code_source, ensure_colab_venv, execute_copy, pip_packages, reset_colab_venv, seeded_chapters,
    shorten, summarize,
)
from course_tasks.testing import (  # noqa: F401  (re-exported)
    VALIDATION_ENV, available_cpus, cmd_bench, cmd_execute, cmd_notebooks, cmd_test, parallel_args, validation_env,
)

COMMAND_MODULES = (environment, homework, book, testing, robustness)
_MISSING = object()


class _Tasks(types.ModuleType):
    """This module, whose names stay shared with the modules of course_tasks.

    Setting one of its names (a test's ``monkeypatch.setattr(tasks, "BUILD", ...)``, or
    ``tasks.run = ...``) sets it too in every module of course_tasks that holds the same
    object under that name, so that the commands see the new value, as they did when they
    were all written in this file. Setting it back restores it everywhere.
    """

    def __setattr__(self, name: str, value: object) -> None:
        old = self.__dict__.get(name, _MISSING)
        if old is not _MISSING:
            for module in COMMAND_MODULES:
                if module.__dict__.get(name, _MISSING) is old:
                    setattr(module, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("book", help="build the HTML book and serve it on this machine")
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    p.add_argument("--no-serve", action="store_true", help="build only (as in CI, where it never serves)")
    p.add_argument("--no-build", action="store_true", help="serve the book built last time")
    p.add_argument("--port", type=int, default=BOOK_PORT,
                   help=f"port of the server (default {BOOK_PORT}, or the next free one; 0: any)")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("test", help="run the whole test suite")
    p.add_argument("-n", "--workers", type=int, metavar="N",
                   help="pytest processes (default: one per CPU; -n 1 runs everything one at a time)")
    p.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("homework", help="generate student notebooks and autograders")
    p.add_argument("--force", action="store_true", help="generate every homework again, even if its inputs are unchanged")
    p.set_defaults(func=cmd_homework)
    p = sub.add_parser("grade", help="grade submissions of one homework with its autograder")
    p.add_argument("homework", help="the homework's name, e.g. hw01_attention_pooling")
    p.add_argument("submissions", nargs="+", help="submission files (.ipynb or .zip) or folders of them")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("notebooks", help="execute and validate the notebooks only")
    p.add_argument("-n", "--workers", type=int, metavar="N", help="pytest processes (default: one per CPU)")
    p.add_argument("pytest_args", nargs="*", help="pytest arguments after --; notebooks named there are the only ones run")
    p.set_defaults(func=cmd_notebooks)
    p = sub.add_parser("bench", help="time course_lib's attention and Transformer against PyTorch and d2l")
    p.add_argument("bench_args", nargs="*", help="arguments for every benchmark script, e.g. --quick (after --)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("execute", help="re-execute notebooks in place")
    p.add_argument("notebooks", nargs="*")
    p.set_defaults(func=cmd_execute)
    p = sub.add_parser("robustness", help="execute copies of the seeded chapters with other seeds")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter with a line `SEED = <int>`)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], metavar="SEED", help="seeds to try (default: 0 1 2)")
    p.add_argument("--timeout", type=int, default=1800, metavar="S", help="time limit of one cell (default: 1800 s)")
    p.set_defaults(func=cmd_robustness)
    p = sub.add_parser("colab-check", help="run every notebook in a clean, Colab-like environment")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter and homework master)")
    p.add_argument("--fresh", action="store_true", help=f"rebuild {COLAB_VENV.relative_to(ROOT)} first")
    p.add_argument("--timeout", type=int, default=1800, metavar="S", help="time limit of one cell (default: 1800 s)")
    p.set_defaults(func=cmd_colab_check)
    p = sub.add_parser("figures", help="the smallest text of each stored figure as the desktop page shows it")
    p.add_argument("notebooks", nargs="*", help="notebooks (default: every chapter and the appendix)")
    p.set_defaults(func=cmd_figures)
    p = sub.add_parser("sync-repo-url", help="copy _config.yml's repository URL into the notebooks")
    p.set_defaults(func=cmd_sync_repo_url)
    args = parser.parse_args()
    try:
        args.func(args)
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode or 1)


if __name__ == "__main__":
    main()
