"""Input checks shared by course_lib's public functions and classes.

One style everywhere: a bad argument raises a ``ValueError`` (a ``TypeError`` when the
argument is not even the right kind of object) whose message names the argument, says
what was expected and shows what was received, e.g. "token ids must be in [0, 347) for a
vocabulary of 347 tokens, got 351 at batch 2, position 5".

Checks of types, dtypes and shapes are free and always run. Checks that read a tensor's
*values* back to Python (a ``min``/``max``) run only where that is cheap: for CPU tensors
outside ``torch.compile`` (:func:`host_checks_allowed`, also
``course_lib.masking.host_checks_allowed``). On a GPU they
are skipped, because reading a value back would make every forward call wait for the
device; there, out-of-range ids fail inside PyTorch's own kernels instead.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn



def host_checks_allowed(t: Tensor) -> bool:
    """Whether value checks that read a tensor back to Python are cheap for ``t``.

    Checks such as ``bool((lens < 0).any())`` copy a result from the device to the host
    and wait for it: on a GPU that stalls every forward call, and under
    ``torch.compile`` it breaks the graph. So the course checks shapes and dtypes
    always, but values only for CPU tensors outside ``torch.compile``.
    """
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def is_int(value: object) -> bool:
    """A Python int that is not a bool (``True`` is an int to Python, never a size to us)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: object, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` must be an int (not a bool) in [minimum, maximum]; returns it."""
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            need = f"an int in [{minimum}, {maximum}]"
        elif minimum is not None:
            need = f"an int >= {minimum}"
        elif maximum is not None:
            need = f"an int <= {maximum}"
        else:
            need = "an int"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def check_bool(name: str, value: object) -> bool:
    """``value`` must be True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_number(name: str, value: object, minimum: float | None = None, *, positive: bool = False,
                 maximum: float | None = None, below_max: bool = False) -> float:
    """``value`` must be a finite real number (not a bool), > 0 if ``positive``, within the bounds; returns it as float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive and not value > 0:
        ok = False
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and (value >= maximum if below_max else value > maximum):
        ok = False
    if not ok:
        bounds = ([">= " + str(minimum)] if minimum is not None else []) + (["> 0"] if positive else []) \
            + ([("< " if below_max else "<= ") + str(maximum)] if maximum is not None else [])
        need = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_probability(name: str, value: object) -> float:
    """A dropout rate or another probability: a number in [0, 1]."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_tokens_not_text(name: str, value: object) -> None:
    """A list of tokens was expected; a str would be read one character at a time."""
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list of tokens (e.g. {value[:30]!r}.split()), got the str {value[:40]!r}, "
                        "which would be read one character at a time")


def is_integer_tensor(X: object) -> bool:
    return isinstance(X, Tensor) and not (X.dtype.is_floating_point or X.dtype.is_complex or X.dtype == torch.bool)


def _where(bad: Tensor) -> str:
    """'at batch b, position t' (or 'at index i') of the first True entry of ``bad``."""
    first = bad.nonzero()[0].tolist()
    if len(first) == 2:
        return f"at batch {first[0]}, position {first[1]}"
    return "at index " + ", ".join(map(str, first))


def check_index_range(X: Tensor, size: int, name: str, what: str) -> None:
    """Values of the integer tensor X must lie in [0, size); on the CPU only (see the module's docstring).

    ``what`` ends the first part of the message, e.g. "for a vocabulary of 347 tokens".
    """
    if X.numel() == 0 or not host_checks_allowed(X):
        return
    low, high = torch.aminmax(X)
    if int(low) < 0 or int(high) >= size:
        bad = (X < 0) | (X >= size)
        value = int(X[tuple(bad.nonzero()[0].tolist())])
        raise ValueError(f"{name} must be in [0, {size}) {what}, got {value} {_where(bad)}")


def check_lengths(lens: Tensor, low: int, high: int, name: str, what: str) -> None:
    """Lengths (an integer tensor) in [low, high], ``what`` saying why; on the CPU only."""
    if lens.numel() == 0 or not host_checks_allowed(lens):
        return
    smallest, largest = torch.aminmax(lens)
    if int(smallest) < low or int(largest) > high:
        bad = (lens < low) | (lens > high)
        value = int(lens[tuple(bad.nonzero()[0].tolist())])
        raise ValueError(f"{name} must hold lengths in [{low}, {high}] ({what}), got {value} {_where(bad)}")


def check_token_ids(X: object, vocab_size: int | None, who: str, name: str = "token ids") -> Tensor:
    """Token ids (B, T) of an integer dtype, in [0, vocab_size) (values checked on the CPU only)."""
    if not is_integer_tensor(X) or X.dim() != 2:  # type: ignore[union-attr]
        raise ValueError(f"{who} expects {name} of shape (B, T) with an integer dtype, got "
                         f"{_describe(X)}")
    if vocab_size is not None:
        check_index_range(X, vocab_size, f"{who}: {name}", f"for a vocabulary of {vocab_size} tokens")  # type: ignore[arg-type]
    return X  # type: ignore[return-value]


def _describe(X: object) -> str:
    if isinstance(X, Tensor):
        return f"shape {tuple(X.shape)} and dtype {X.dtype}"
    return type(X).__name__


def describe(X: object) -> str:
    """'shape (2, 3) and dtype torch.float32' for a tensor, the type's name otherwise."""
    return _describe(X)


def check_float_tensor(name: str, X: object, dim: int | None = None, shape_text: str | None = None) -> Tensor:
    """A floating-point tensor, of ``dim`` dimensions if given."""
    if not isinstance(X, Tensor) or not X.dtype.is_floating_point or (dim is not None and X.dim() != dim):
        need = shape_text or (f"a {dim}-D tensor" if dim is not None else "a tensor")
        raise ValueError(f"{name} must be {need} of a floating-point dtype, got {_describe(X)}")
    return X


def check_features(layer: nn.Module, X: Tensor, name: str, hint: str = "") -> None:
    """X's last axis must match the input size of the linear ``layer`` (once a lazy layer has learned it)."""
    weight = getattr(layer, "weight", None)
    if weight is None or isinstance(weight, nn.parameter.UninitializedParameter):
        return  # a lazy layer before its first call: it will take X's size
    expected = weight.shape[1]
    if X.shape[-1] != expected:
        raise ValueError(f"{name} must have {expected} features on its last axis (the layer's input size, given "
                         f"when it was built or learned on its first call){hint}, got shape {tuple(X.shape)}")
    if X.dtype != weight.dtype and not autocasting(X):  # under autocast, mixed dtypes are what it is for
        raise ValueError(f"{name} has dtype {X.dtype} but the layer's parameters are {weight.dtype}: convert one "
                         f"(e.g. X.to({weight.dtype}) or module.to({X.dtype}))")


def autocasting(X: Tensor) -> bool:
    """Whether ``torch.autocast`` is on for X's device (mixed dtypes are then expected, and cast by PyTorch)."""
    return torch.is_autocast_enabled(X.device.type)


def check_vocab_has(vocab: object, tokens: tuple[str, ...], who: str) -> None:
    """The vocabulary must hold these reserved tokens; unknown ones would silently become ``<unk>``."""
    index = getattr(vocab, "token_to_idx", None)
    if not isinstance(index, dict):
        raise TypeError(f"{who} expects a course_lib.text.Vocab, got {type(vocab).__name__}")
    missing = [t for t in tokens if t not in index]
    if missing:
        raise ValueError(f"{who} needs the tokens {', '.join(tokens)} in the vocabulary, which lacks "
                         f"{', '.join(missing)} (they would silently become <unk>); build it with "
                         "course_lib.text.Vocab, whose reserved tokens include them")


def check_device(name: str, value: object) -> torch.device:
    """``value`` as a ``torch.device`` that exists here: a ValueError naming ``name`` otherwise."""
    try:
        device = torch.device(value)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda', got {value!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={value!r}, but CUDA is not available here (torch {torch.__version__}); "
                         f"use {name}='cpu' or course_lib.try_gpu()")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name}={value!r}, but only {torch.cuda.device_count()} GPU(s) are visible")
    if device.type == "meta":
        raise ValueError(f"{name}='meta' holds no values; use 'cpu' or 'cuda'")
    return device


def check_output_path(path: str | os.PathLike, name: str, overwrite: bool = True) -> Path:
    """Check, before any long work, that a file can be written at ``path``; return it as a Path.

    Missing parent folders are created. Refused: an existing folder at ``path``, a parent
    that is a file, a folder that cannot be written, and, with ``overwrite=False``, an
    existing file at ``path`` (which is left as it is). A probe file is created and removed.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} must be a file path, got {str(path)!r}, which is an existing folder")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise ValueError(f"{name}={str(path)!r} already exists and would be replaced; choose another path, move the "
                         f"file away, or allow replacing it (--overwrite)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{name}={str(path)!r} cannot be written: {str(parent)!r} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{name}={str(path)!r} cannot be written: {err}") from None
    return path


def _umask() -> int:
    """The process's umask: read from /proc where it can be (setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    A failure half-way leaves any earlier file at ``path`` untouched and no partial file.
    The file's contents are flushed to the disk before the rename, and the file gets the
    permissions of a file created by ``open`` (``0o666`` less the umask), not the private
    ones of a temporary file. With ``overwrite=False`` an existing file at ``path`` is
    never replaced, not even one that appears while ``write`` runs: a ``FileExistsError``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, f"cannot write {str(path)!r}: it is an existing folder")
    exists_message = (f"{str(path)!r} already exists; it was left as it is. Choose another path, move the file "
                      f"away, or pass overwrite=True to replace it")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(17, exists_message)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # a missing folder, a parent that is a file, no permission: name the file asked for
        raise type(err)(err.errno, f"cannot write {str(path)!r}: {err.strerror} ({str(path.parent)!r})") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails if path exists
            except FileExistsError:
                raise FileExistsError(17, exists_message) from None
            except OSError:  # a file system without hard links: the check above, then a rename
                if path.exists() or path.is_symlink():
                    raise FileExistsError(17, exists_message) from None
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def refuse_untied_state_dict(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """A ``load_state_dict`` pre-hook: refuse two different tensors for one shared parameter.

    In a model whose parameters are shared (tied output and embedding matrices, one
    embedding for source and target), the state dict lists the shared tensor under each
    of its names. Loading would copy one entry, then the other, into the same tensor:
    the first would be silently lost. This hook raises instead, naming both entries.
    """
    names_of: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), []).append(name)
    for names in names_of.values():
        present = [n for n in names if prefix + n in state_dict]
        for other in present[1:]:
            a, b = state_dict[prefix + present[0]], state_dict[prefix + other]
            if a is b:
                continue
            same = isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.device == b.device \
                and bool(torch.equal(a, b))
            if not same:
                raise ValueError(
                    f"this model shares one tensor between {prefix + present[0]!r} and {prefix + other!r} "
                    "(tied weights or a shared embedding), but the state dict holds two different tensors for them; "
                    "loading it would silently keep only one. Build the model without the sharing (e.g. "
                    "tie_weights=False, shared_embedding=False) to load this state dict")
