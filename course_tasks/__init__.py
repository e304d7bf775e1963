"""The project's commands, behind ``python3 tasks.py``: one module per group of commands.

==============================  ==========================================================
module                          commands and what they share
==============================  ==========================================================
``course_tasks.environment``    paths, ``.venv`` and its pinned packages, PyTorch's index,
                                Chromium, running a command; ``sync-repo-url``
``course_tasks.homework``       ``homework`` (Otter Assign) and ``grade``
``course_tasks.book``           ``book`` (build and serve) and ``figures``
``course_tasks.testing``        ``test``, ``notebooks``, ``bench``, ``execute``; the
                                numerical configuration of validation
``course_tasks.robustness``     ``robustness`` (other seeds) and ``colab-check``
==============================  ==========================================================

Standard library only: ``tasks.py`` runs before the environment exists. ``tasks.py``
holds the command line and re-exports every name, so ``tasks.generate_homework`` or a
test's ``monkeypatch.setattr(tasks, "BUILD", ...)`` keep working (see ``tasks._Tasks``).
"""
