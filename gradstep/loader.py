"""Finding and loading scenarios: bundled ones by name, the user's own by path.

Loading a scenario file runs it as Python (it is the user's code, with the
user's rights). Whatever goes wrong comes back as one :class:`LoadError` that
names the file, the line and what is missing or wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import linecache
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from gradstep.safe_text import printable
from gradstep.scenario import DTYPES, Data, NumpySide, Scenario, TorchSide, Variant

REQUIRED_VARIANTS = ("as-posted", "fixed")


class LoadError(Exception):
    """A scenario that cannot be loaded: the message says where and why."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line = path, line
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")


def bundled_dir() -> Path:
    """Where the bundled scenarios are: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "scenarios", package.parent / "scenarios"):
        if candidate.is_dir():
            return candidate
    return package / "scenarios"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.py") if not p.name.startswith("_"))


def resolve(name_or_path: str) -> Path:
    """A bundled scenario's file, or the user's file; unknown names list the closest ones."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".py" or "/" in name_or_path or "\\" in name_or_path:
        if not candidate.is_file():
            raise LoadError("no such scenario file", str(candidate))
        return candidate.resolve()
    path = bundled_dir() / f"{name_or_path}.py"
    if path.is_file():
        return path
    names = bundled_names()
    close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise LoadError(f"unknown scenario {name_or_path!r}.{hint} Bundled scenarios: {', '.join(names)}.")


def load_scenario(name_or_path: str, variant: str | None = None) -> Scenario:
    """Load, check and resolve a scenario (bundled name or path) with ``variant`` applied."""
    path = resolve(name_or_path)
    module = _import_file(path)
    scenario = _scenario_of(module, path)
    # Its names are shown on the terminal: escaped, like any text from a file (safe_text).
    scenario = dataclasses.replace(scenario, source_path=str(path), name=printable(scenario.name),
                                   summary=printable(scenario.summary, lines=True),
                                   notes=printable(scenario.notes, lines=True))
    if variant is not None and variant not in scenario.variants:
        known = ", ".join(scenario.variants)
        close = difflib.get_close_matches(variant, list(scenario.variants), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LoadError(f"scenario {scenario.name!r} has no variant {variant!r} (variants: {known}){hint}",
                        str(path))
    return scenario.with_variant(variant)


def list_scenarios() -> list[Scenario]:
    """Every bundled scenario, loaded (not resolved to a variant)."""
    return [_scenario_of(_import_file(p), p) for p in sorted(bundled_dir().glob("*.py")) if not p.name.startswith("_")]


def _import_file(path: Path) -> ModuleType:
    module_name = f"gradstep_scenario_{path.stem}_{abs(hash(str(path)))}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise LoadError("not a Python file", str(path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling-free introspection need it
        spec.loader.exec_module(module)
    except LoadError:
        raise
    except SyntaxError as error:
        raise LoadError(f"syntax error: {error.msg}", str(path), error.lineno) from error
    except (Exception, SystemExit) as error:  # the file is user code: anything can come out, sys.exit too
        sys.modules.pop(module_name, None)
        line = _line_in(path, error)
        raise LoadError(f"{type(error).__name__} while running the file: {_message(error)}", str(path), line) from error
    return module


def _line_in(path: Path, error: BaseException) -> int | None:
    """The last line of ``path`` in the error's traceback."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return line


def _message(error: BaseException) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _scenario_of(module: ModuleType, path: Path) -> Scenario:
    scenario = getattr(module, "SCENARIO", None)
    if scenario is None:
        raise LoadError("defines no SCENARIO (a gradstep.scenario.Scenario at module level)", str(path))
    if not isinstance(scenario, Scenario):
        raise LoadError(
            f"SCENARIO is a {type(scenario).__name__}, not a gradstep.scenario.Scenario",
            str(path), _definition_line(path, "SCENARIO"),
        )
    problems = _problems(scenario) or _variant_problems(scenario)
    if problems:
        raise LoadError("; ".join(problems), str(path), _definition_line(path, "SCENARIO"))
    return scenario


def _definition_line(path: Path, name: str) -> int | None:
    pattern = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=")  # SCENARIO = ... or SCENARIO: Scenario = ...
    for number, text in enumerate(linecache.getlines(str(path)) or path.read_text().splitlines(), start=1):
        if pattern.match(text):
            return number
    return None


def mapping_line(path: str, message: str) -> int | None:
    """The line of the TensorMap a mapping error is about (its first quoted name), else of ``mapping=``.

    Mapping errors come from checking the mapping against the built model, in
    gradstep's code: the user's file has no frame in them to point at.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    quoted = re.search(r"'([^']+)'", message)
    patterns = [re.compile(r"^\s*mapping\s*=")]
    if quoted:
        patterns.insert(0, re.compile(rf"TensorMap\(\s*[\"']{re.escape(quoted.group(1))}[\"']"))
    for pattern in patterns:
        for number, text in enumerate(lines, start=1):
            if pattern.search(text):
                return number
    return None


def _variant_problems(s: Scenario) -> list[str]:
    """Every variant must apply, not only the one asked for: a typo fails the file at load."""
    out = []
    for name in s.variants:
        try:
            resolved = s.with_variant(name)
        except (KeyError, TypeError, ValueError) as error:
            out.append(f"variant {name!r}: {_message(error)}")
            continue
        if resolved.numpy is not s.numpy or resolved.torch is not s.torch:
            out += [f"variant {name!r}: {problem}" for problem in _side_problems(resolved)]
    return out


def _side_problems(s: Scenario) -> list[str]:
    """Each side is one step function or its pieces (and a scheduler has an optimizer)."""
    out = []
    if isinstance(s.numpy, NumpySide):
        out += s.numpy.problems()
    if isinstance(s.torch, TorchSide):
        out += s.torch.problems()
    return out


def _problems(s: Scenario) -> list[str]:
    """What is missing or wrong in a Scenario, each as a short phrase."""
    out = []
    if not isinstance(s.name, str) or not s.name:
        out.append("name must be a non-empty string")
    if s.dtype not in DTYPES:
        out.append(f"dtype must be one of {', '.join(DTYPES)}, not {s.dtype!r}")
    if not isinstance(s.seed, int):
        out.append("seed must be an int")
    if not isinstance(s.epochs, int) or s.epochs < 1:
        out.append("epochs must be a positive int")
    for field in ("data", "init"):
        if not callable(getattr(s, field)):
            out.append(f"{field} must be a function of the hyper-parameters")
    if not isinstance(s.numpy, NumpySide):
        out.append("numpy must be a gradstep.scenario.NumpySide")
    if not isinstance(s.torch, TorchSide):
        out.append("torch must be a gradstep.scenario.TorchSide")
    out += _side_problems(s)
    for name in REQUIRED_VARIANTS:
        if name not in s.variants:
            out.append(f"variant {name!r} is missing (every scenario has 'as-posted' and 'fixed')")
    for name, v in s.variants.items():
        if not isinstance(v, Variant):
            out.append(f"variant {name!r} must be a gradstep.scenario.Variant")
    if s.default_variant not in s.variants:
        out.append(f"default_variant {s.default_variant!r} is not one of the variants")
    return out + _tolerance_problems(s)


def _tolerance_problems(s: Scenario) -> list[str]:
    """Tolerances come in pairs of finite numbers >= 0, as on the command line."""
    from gradstep.compare import check_tolerances  # numpy only: loading stays light

    out = []
    if (s.rtol is None) != (s.atol is None):
        out.append("rtol and atol must be given together")
    pairs = [("", (s.rtol, s.atol))] if s.rtol is not None and s.atol is not None else []
    if not isinstance(s.tolerances, Mapping):
        return [*out, "tolerances must be a dict of tensor name -> (rtol, atol)"]
    pairs += [(f" of {name!r}", value) for name, value in s.tolerances.items()]
    for where, value in pairs:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            out.append(f"tolerance{where}: {value!r} is not a pair (rtol, atol)")
            continue
        try:
            check_tolerances(*value)
        except ValueError as error:
            out.append(f"tolerance{where}: {error}")
    return out


__all__ = ["Data", "LoadError", "bundled_dir", "bundled_names", "list_scenarios", "load_scenario", "resolve"]
