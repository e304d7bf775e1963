"""Import d2l 1.0.3's PyTorch module as a test oracle.

``d2l.torch`` imports torchvision at module level (``import torchvision`` and
``from torchvision import transforms``) but uses it only for its image data sets, which
no test here touches. torchvision has no CPU build on the machines this course is
tested on, so the import fails. When, and only when, the real torchvision cannot be
imported, we register an empty stand-in module under that name before importing
d2l; any d2l function that really needed torchvision would then fail loudly with an
AttributeError instead of silently doing something else.

course_lib itself never imports d2l (tests/test_repository.py checks that).
"""

from __future__ import annotations

import importlib
import sys
import types


def load_d2l():
    """Return the ``d2l.torch`` module, stubbing torchvision if it cannot be imported.

    The stand-in is registered only while d2l is imported (d2l keeps its own reference):
    left in ``sys.modules`` it would look like an installed torchvision to other
    libraries (``transformers`` asks ``importlib.util.find_spec("torchvision")``, which
    fails on a module without a spec).
    """
    if "d2l.torch" in sys.modules:
        return sys.modules["d2l.torch"]
    try:
        importlib.import_module("torchvision")
    except Exception:  # missing, or present but broken (no matching CPU build)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        stub = types.ModuleType("torchvision")
        stub.__doc__ = "Empty stand-in: torchvision cannot be imported on this machine."
        stub.transforms = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.transforms"] = stub.transforms
        try:
            return importlib.import_module("d2l.torch")
        finally:
            for name in ("torchvision", "torchvision.transforms"):
                if sys.modules.get(name) in (stub, stub.transforms):
                    del sys.modules[name]
    return importlib.import_module("d2l.torch")
