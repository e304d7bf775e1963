"""The grading helpers of the hidden tests, kept here once.

Every hidden test of every homework master starts with the lines between the two marker
comments below, pasted as they are (``tests/test_homework.py`` checks that the copies
agree with this file): a hidden test must run on its own inside the autograder, where
nothing but the student's notebook and the test itself is available. ``grading_helpers``
wraps the same lines so that they can be tested here.

* ``own_work(fn, *banned, ops=..., allowed=...)``: ``fn``, watched while it runs. A call of
  anything banned (a function, a class, a whole module) fails with "this question asks you
  to write it yourself", by whatever route it is reached: the module's name, an alias, a
  default argument, a closure, a global, a ``functools.partial``, a subclass, a copy of its
  code. Python functions are recognized by their code objects (``sys.setprofile``), PyTorch
  functions by identity (a ``TorchFunctionMode`` sees every route to them), and PyTorch's
  operators by name (``ops``), through ``torch.ops.aten`` or as ``torch._x`` builtins. Before
  the call, the function's defaults, closure and the globals it names are inspected, so
  that a banned function held there is named even if the inputs never reach it.
* ``check(answer, cases, reference, slips, close)``: the answer and the reference on
  every generated case; inputs must come back unchanged; a slip is named only when the
  answer equals that slip's result on every case, wrong exactly where the slip is wrong;
  otherwise the feedback shows the first wrong case with the expected and actual values.
* ``show(x)``: a value for the feedback (tensors by shape, dtype and first values).
"""


def grading_helpers(torch):
    # -- grading helpers: the same in every hidden test (tests/homework_slips/grading.py) --
    import copy, dis, inspect, os, sys, types
    from torch.overrides import TorchFunctionMode

    def own_work(fn, *banned, ops=None, allowed=()):
        """fn, watched while it runs: a call of anything `banned` (functions, classes, modules, or
        (object, name) pairs) by whatever route, or of an aten operator in `ops` ({operator: name}),
        fails with the rule. Calls made inside the `allowed` functions are not watched."""
        codes, objects, folders = {}, {}, []

        def label(b):
            module = getattr(b, "__module__", None) or ""
            name = getattr(b, "__qualname__", b.__name__).replace("_VariableFunctionsClass.", "")
            for part in ("linalg", "special", "fft"):   # torch.linalg.lstsq is torch._C._linalg.linalg_lstsq
                if module == f"torch._C._{part}":
                    module, name = f"torch.{part}", name.removeprefix(part + "_")
            module = ("course_lib" if module.startswith("course_lib") else "torch.nn" if module.startswith("torch.nn.modules")
                      else {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch"}.get(module, module))
            return f"{module}.{name}"

        def fingerprint(code):   # the same names, variables and constants: a copy of the code
            return code.co_names, code.co_varnames, tuple(c for c in code.co_consts if isinstance(c, (str, int, float)))

        def ban(b, name):
            objects[id(b)] = (b, name)
            if isinstance(b, types.ModuleType):   # a module or a package: all its code, and copies of its functions
                package = b.__file__.endswith("__init__.py")
                folders.append((os.path.dirname(b.__file__) + os.sep if package else b.__file__, b.__name__))
                mine = lambda n: n == b.__name__ or (package and n.startswith(b.__name__ + "."))
                for m in [m for n, m in list(sys.modules.items()) if mine(n)]:
                    for v in list(vars(m).values()):
                        if isinstance(v, (type, types.FunctionType)) and mine(getattr(v, "__module__", None) or ""):
                            ban(v, f"{label(v)} (nothing from {b.__name__} is allowed here)")
            elif isinstance(b, type):
                for v in vars(b).values():
                    for f in (v, getattr(v, "__func__", None), getattr(v, "fget", None)):
                        if isinstance(f, types.FunctionType):
                            ban(f, name)
            elif isinstance(b, types.FunctionType):   # a decorated function: its own code, not the decorator's shared wrapper
                code = inspect.unwrap(b).__code__
                codes[code] = codes[fingerprint(code)] = name

        for b in banned:
            ban(*(b if isinstance(b, tuple) else (b, None if isinstance(b, types.ModuleType) else label(b))))
        allowed = {a.__code__ for a in allowed}

        def code_ban(code):
            found = codes.get(code) or (len(code.co_names) > 3 and codes.get(fingerprint(code)))
            return found or next((f"{package}.{getattr(code, 'co_qualname', code.co_name)} (nothing from {package} is allowed here)"
                                  for path, package in folders if code.co_filename.startswith(path)), None)

        def held(f, route, seen):
            """The banned object that f holds, if any: in its defaults, its closure, the globals it names."""
            if id(f) in seen or isinstance(f, types.ModuleType) or (isinstance(f, types.FunctionType) and f.__code__ in allowed):
                return None
            seen.add(id(f))
            if id(f) in objects and objects[id(f)][0] is f:
                return f"{objects[id(f)][1]}, reached through {route}"
            if isinstance(f, types.FunctionType) and code_ban(f.__code__):
                return f"{code_ban(f.__code__)}, reached through {route}"
            if id(type(f)) in objects and objects[id(type(f))][0] is type(f):   # an instance of a banned class
                return f"{objects[id(type(f))][1]}, reached through {route}"
            parts = list(f.values() if isinstance(f, dict) else f if isinstance(f, (list, tuple, set, frozenset)) else ())
            parts += [getattr(f, a, None) for a in ("func", "__func__", "__wrapped__", "__self__")]
            if isinstance(f, types.FunctionType):
                parts += [*(f.__defaults__ or ()), *(f.__kwdefaults__ or {}).values(), *(c.cell_contents for c in f.__closure__ or ())]
                stack = [f.__code__]
                while stack:
                    code = stack.pop()
                    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
                    parts += [f.__globals__[n] for n in names if n in f.__globals__]
                    stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            for p in parts:
                why = p is not None and held(p, (route + " -> " if route else "") + getattr(p, "__name__", type(p).__name__), seen)
                if why:
                    return why
            return None

        def call(*args, **kwargs):
            why = held(fn, fn.__name__, set())
            if why:
                raise AssertionError(f"this question asks you to write it yourself: do not use {why}")
            calls, inside = [], []

            def watch(frame, event, arg):
                if inside:
                    if event == "return" and frame is inside[-1]:
                        inside.pop()
                elif event == "call" and frame.f_code in allowed:
                    inside.append(frame)
                elif event == "call" and not frame.f_code.co_flags & 0x2A0 and code_ban(frame.f_code):   # generators (0x2A0): may be closed late
                    calls.append(code_ban(frame.f_code))
                elif event == "c_call" and id(arg) in objects and objects[id(arg)][0] is arg:
                    calls.append(objects[id(arg)][1])

            class Functions(TorchFunctionMode):
                def __torch_function__(self, func, types_, args=(), kwargs=None):
                    operator = ((type(func).__module__ == "torch._ops" or isinstance(func, types.BuiltinFunctionType))   # torch.ops.aten.x, torch.x
                                and getattr(func, "__name__", "").split(".")[0])
                    if not inside and id(func) in objects and objects[id(func)][0] is func:
                        calls.append(objects[id(func)][1])
                    elif not inside and operator in (ops or {}):
                        calls.append(ops[operator])
                    return func(*args, **(kwargs or {}))

            modes = [Functions()]
            before = sys.getprofile()
            for m in modes:
                m.__enter__()
            sys.setprofile(watch)
            try:
                result = fn(*args, **kwargs)
            finally:
                sys.setprofile(before)
                for m in reversed(modes):
                    m.__exit__(None, None, None)
                if calls:
                    raise AssertionError(f"this question asks you to write it yourself: do not call {calls[0]}")
            return result

        return call

    def show(x, width=300):
        """x for the feedback: a tensor as its shape, dtype and (first) values, rounded."""
        if torch.is_tensor(x):
            x = x.detach()
            y = torch.round(x.double(), decimals=5) if x.is_floating_point() else x
            text = f"tensor of shape {tuple(x.shape)}, {str(x.dtype).replace('torch.', '')}, "
            text += f"values {y.tolist()}" if x.numel() <= 20 else f"first values {y.flatten()[:20].tolist()}"
        elif isinstance(x, BaseException):
            text = f"an error, {type(x).__name__}: {x}"
        elif isinstance(x, float):
            text = f"{x:.6g}"
        elif callable(x) and hasattr(x, "__name__"):
            text = x.__name__
        elif isinstance(x, (list, tuple)) and any(torch.is_tensor(v) for v in x):
            text = "(" + ", ".join(show(v, width) for v in x) + ")"
        else:
            text = repr(x)
        return text if len(text) <= width else text[:width] + " ..."

    def unchanged(a, b):
        if torch.is_tensor(a):
            if not (torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape):
                return False
            nan = a.isnan() if a.is_floating_point() else torch.zeros_like(a, dtype=torch.bool)
            return bool(torch.equal(nan, b.isnan() if b.is_floating_point() else nan) and torch.equal(a[~nan], b[~nan]))
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(unchanged(u, v) for u, v in zip(a, b))
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(unchanged(a[k], b[k]) for k in a)
        return type(a) is type(b) and a == b

    def check(answer, cases, reference, slips=(), close=None, name=None):
        """answer(*case.values()) against reference(**case) for every case, a dict of named inputs.

        The answer gets copies of the inputs, which must come back unchanged. A wrong answer is told
        the mistake of a slip, a pair (function of the case, mistake), only if it equals that slip's
        result on every case, those where the slip differs from the reference included; otherwise the
        first wrong case is shown, with the expected and the actual values."""
        name = name or getattr(answer, "__name__", "your function")

        def same(a, b):
            try:
                return not isinstance(a, BaseException) and bool(close(a, b))
            except Exception:
                return False

        def called(c):
            return f"{name}{'' if name.isidentifier() else ' '}(" + ", ".join(f"{k}={show(v, 150)}" for k, v in c.items()) + ")"

        def outcome(c):   # the answer on copies of the inputs (or the error it raised), which must be left unchanged
            given = copy.deepcopy(c)
            try:
                out = answer(*given.values())
            except Exception as e:
                if "write it yourself" in str(e):
                    raise
                out = e
            for k in c:
                assert unchanged(c[k], given[k]), (f"do not modify the inputs: {called(c)} changed its argument {k} "
                                                   f"to {show(given[k], 150)}; compute new values, do not change {k} in place")
            return out

        def attempt(slip, c):
            try:
                return slip(**copy.deepcopy(c))
            except Exception as e:
                return e

        def where(a, b):   # the entry where two results differ most, when they are tensors of one shape
            try:
                pairs = list(zip(a, b)) if isinstance(b, tuple) else [(a, b)]
                for n, (x, y) in enumerate(pairs):
                    x, y = torch.as_tensor(x).detach().double(), torch.as_tensor(y).detach().double()
                    if x.shape == y.shape and x.numel() > 1 and not torch.allclose(x, y, equal_nan=True):
                        i = [int(j) for j in torch.unravel_index((x - y).abs().nan_to_num(float("inf")).argmax(), x.shape)]
                        part = f" of the {['first', 'second', 'third'][n]} result" if len(pairs) > 1 else ""
                        return f"\n(the largest difference{part} is at index {i}: {x[tuple(i)].item():.6g} instead of {y[tuple(i)].item():.6g})"
            except Exception:
                pass
            return ""

        def kind(a, b, path="the result", depth=0):   # a difference of type that the values shown may hide (1 and 1.0, True and 1)
            if isinstance(a, BaseException) or depth > 2:
                return ""
            if type(a) is not type(b):
                return f"\n(note the types: {path} is {type(a).__name__} here, {type(b).__name__} in the expected result)"
            if isinstance(a, (list, tuple)) and len(a) == len(b):
                return next((t for t in (kind(x, y, f"{path}[{i}]", depth + 1) for i, (x, y) in enumerate(zip(a, b))) if t), "")
            return ""

        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # tiny tensors: one thread is fastest, and immune to a busy machine
        try:
            expected = [reference(**copy.deepcopy(c)) for c in cases]
            got = [outcome(c) for c in cases]
            for slip, mistake in slips:
                wrong = [attempt(slip, c) for c in cases]   # a slip that cannot run on a case differs there, and no answer matches it
                differ = [i for i in range(len(cases)) if not same(wrong[i], expected[i])]
                if differ and all(same(got[i], wrong[i]) for i in range(len(cases))) and not any(same(got[i], expected[i]) for i in differ):
                    i = differ[0]
                    raise AssertionError(f"{mistake}\nFor example, {called(cases[i])}\nreturned {show(got[i])}\n"
                                         f"expected {show(expected[i])}{where(got[i], expected[i])}")
        finally:
            torch.set_num_threads(threads)
        for i, c in enumerate(cases):
            if not same(got[i], expected[i]):
                raise AssertionError(f"{called(c)}\nreturned {show(got[i])}\nexpected {show(expected[i])}{where(got[i], expected[i])}"
                                     f"{kind(got[i], expected[i])}")
    # -- end of the grading helpers --

    return own_work, show, check


def copy_into_masters() -> None:
    """Replace the grading helpers of every hidden test of every master by the lines above."""
    import json
    from pathlib import Path

    here = Path(__file__)
    lines = here.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "# -- grading helpers" in line)
    end = next(i for i, line in enumerate(lines) if "# -- end of the grading helpers --" in line)
    for master in sorted((here.resolve().parents[2] / "book" / "homework").glob("hw*.ipynb")):
        nb = json.loads(master.read_text(encoding="utf-8"))
        changed = 0
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and "# -- grading helpers" in src:
                old = src.split("\n")
                s = next(i for i, line in enumerate(old) if "# -- grading helpers" in line)
                e = next(i for i, line in enumerate(old) if "# -- end of the grading helpers --" in line)
                new = "\n".join(old[:s] + lines[start:end + 1] + old[e + 1:])
                if new != src:
                    cell["source"], changed = new.splitlines(keepends=True), changed + 1
        if changed:
            master.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{master.name}: grading helpers updated in {changed} hidden tests (re-execute it)")


if __name__ == "__main__":
    copy_into_masters()
