"""The headless report of a run: a Rich rendering for people, a JSON object for scripts.

Every number goes through :mod:`gradstep.numfmt`, so what is printed is the
stored value at full precision, never a print option's truncation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from gradstep.compare import Status, TensorComparison
from gradstep.engine import Engine, RunResult
from gradstep.numfmt import fmt, fmt_array, json_number
from gradstep.safe_text import Printable

MARKS = {
    Status.OK: ("✓", "green"),
    Status.DRIFT: ("~", "yellow"),
    Status.ROUNDING: ("≈", "blue"),
    Status.ONE_SIDE: ("◐", "cyan"),
    Status.SHAPE: ("▭", "magenta"),
    Status.NONFINITE: ("!", "bold red"),
    Status.DIVERGED: ("✗", "bold red"),
}
LABELS = {
    Status.OK: "within tolerance",
    Status.DRIFT: "drift only",
    Status.ROUNDING: "rounding only",
    Status.ONE_SIDE: "one side only",
    Status.SHAPE: "shapes differ",
    Status.NONFINITE: "NaN/Inf",
    Status.DIVERGED: "diverged",
}


def tensor_summary(engine: Engine) -> list[dict[str, Any]]:
    """Per tensor over the whole run: worst status, steps out of tolerance, worst differences."""
    trace = engine.trace
    out = []
    for col, key in enumerate(trace.keys):
        status = trace.status[:, col]
        present = status >= 0
        if not present.any():
            continue
        abs_col = trace.max_abs[:, col]
        worst_step = int(np.argmax(abs_col))
        out.append({
            "tensor": key,
            "status": Status(int(status[present].max())),
            # Out of tolerance free-running, elementwise or normwise: every status but OK and one-sidedness.
            "steps_out": int(np.isin(status, _OUT).sum()),
            "rounding": int((status == Status.ROUNDING).sum()),
            "rounding_reason": getattr(engine, "rounding_reasons", {}).get(key, ""),
            "max_abs": float(abs_col.max()),
            "max_rel": trace.max_rel[:, col].max(),  # float32: shown as its own shortest decimal
            "worst_step": worst_step,
        })
    return out


_OUT = [int(s) for s in (Status.DRIFT, Status.ROUNDING, Status.NONFINITE, Status.DIVERGED)]


def render(engine: Engine, result: RunResult, *, hex_bits: bool = False, patches: list[str] | None = None) -> Group:
    """The Rich report of ``gradstep check``."""
    s = engine.scenario
    parts: list[Any] = [_header(engine, result, patches)]
    rows = tensor_summary(engine)
    numbers = [fmt(row[column]) for row in rows for column in ("max_abs", "max_rel")]
    marks_only = _Fitting(lambda: _narrow_tensor_table(rows), lambda: _stacked_tensor_table(rows), numbers)
    parts.append(_Fitting(lambda: _tensor_table(rows, words=True), lambda: marks_only, numbers))
    parts.append(_divergence_text(result, hex_bits))
    rounding = _rounding_text(rows, engine)
    if rounding is not None:
        parts.append(rounding)
    parts.append(diagnosis_text(engine, result))
    parts.append(_drift_text(result))
    parts.append(_final_table(engine, hex_bits))
    if engine.trace.metrics and (engine.trace.metrics[-1].numpy or engine.trace.metrics[-1].torch):
        parts.append(_metrics_table(engine, hex_bits))
    if engine.unmapped_torch:
        parts.append(Text(f"torch only (no NumPy counterpart): {', '.join(engine.unmapped_torch)}", style="cyan"))
    verdict = "PARITY" if result.parity else "DIVERGED"
    style = "bold green" if result.parity else "bold red"
    if result.error is not None:
        verdict = f"ERROR at step {result.error.step}" if result.error.step is not None else "ERROR"
        parts.append(Text(f"error: {error_text(result.error)}", style="bold red"))
    parts.append(Text(f"{verdict}: {s.name} ({s.variant}), {result.steps} steps", style=style))
    return Group(*parts)


def error_text(error: Any) -> str:
    """The scenario's own exception: side, function, step, the user's file:line, then the exception."""
    return str(error)


def _header(engine: Engine, result: RunResult, patches: list[str] | None) -> Text:
    s = engine.scenario
    text = Text()
    text.append(f"{s.name}", style="bold")
    text.append(f" ({s.variant}) — {s.summary}\n")
    tf32 = "" if engine.tf32 is None else f", TF32 {'on' if engine.tf32 else 'off'}"
    text.append(
        f"{result.steps} of {engine.total_steps} steps, {engine.steps_per_epoch} per epoch; "
        f"torch on {engine.device} in {engine.dtype_name}{tf32}; stopped: {result.stopped}\n"
    )
    if patches:
        text.append(f"patches in force: {', '.join(patches)}\n", style="yellow")
    note = precision_note(engine)
    if note:
        text.append(f"{note}\n", style="blue")
    return text


class _Fitting:
    """A table as it is where every number in it fits on one line, else a narrower form (or the
    next _Fitting down).

    Full precision is the point of the report: on an 80-column terminal a
    float64 folded onto three lines of a table cell is hard to read and easy
    to misread, so narrow consoles get the same numbers laid out another way.
    ``numbers``: the cells' numbers, which must come out of the wide form whole.
    """

    def __init__(self, wide: Callable[[], RenderableType], narrow: Callable[[], RenderableType],
                 numbers: Iterable[str]):
        self.wide, self.narrow = wide, narrow
        self.numbers = {word for cell in numbers for word in cell.split()}

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = self.wide()
        # Rendered for real: Rich may narrow any column, so measuring cannot tell what it folds.
        lines = console.render_lines(wide, options, pad=False)
        shown = {word for line in lines for word in "".join(segment.text for segment in line).split()}
        yield wide if self.numbers <= shown else self.narrow()


def _tensor_table(rows: list[dict[str, Any]], words: bool) -> Table:
    """One row per tensor; ``words``: each status's mark and name, else its mark alone."""
    table = Table(title="Tensors, worst over the run (free-running)", title_justify="left")
    table.add_column("tensor", no_wrap=True)
    table.add_column("status" if words else "", no_wrap=True)
    table.add_column("steps out", justify="right")
    # Full precision is the point: fold a long number onto two lines rather than cut it.
    table.add_column("max abs", justify="right", overflow="fold")
    table.add_column("max rel", justify="right", overflow="fold")
    table.add_column("worst step", justify="right")
    for row in rows:
        mark, style = MARKS[row["status"]]
        table.add_row(
            row["tensor"],
            Text(f"{mark} {LABELS[row['status']]}" if words else mark, style=style),
            str(row["steps_out"]),
            fmt(row["max_abs"]),
            fmt(row["max_rel"]),
            str(row["worst_step"]),
        )
    return table


def _narrow_tensor_table(rows: list[dict[str, Any]]) -> Group:
    """The table with the statuses' marks alone, and what the marks mean under it."""
    shown = sorted({row["status"] for row in rows})
    legend = Text("  ".join(f"{MARKS[s][0]} {LABELS[s]}" for s in shown), style="dim")
    return Group(_tensor_table(rows, words=False), legend)


def _stacked_tensor_table(rows: list[dict[str, Any]]) -> Table:
    """The per-tensor figures one under another: for consoles too narrow for even the marks' table."""
    columns = ("status", "steps out", "max abs", "max rel", "worst step")
    by_name = {row["tensor"]: row for row in rows}

    def cells(name: str) -> tuple:
        row = by_name[name]
        mark, style = MARKS[row["status"]]
        return (Text(f"{mark} {LABELS[row['status']]}", style=style), str(row["steps_out"]), fmt(row["max_abs"]),
                fmt(row["max_rel"]), str(row["worst_step"]))

    return _stacked("Tensors, worst over the run (free-running)", by_name, columns, cells)


def _stacked(title: str, names: Iterable[str], columns: tuple[str, ...], cells: Callable[[str], tuple]) -> Table:
    """A side-by-side table turned on its side: each row's cells one under another, labelled."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column("", no_wrap=True)
    table.add_column("", overflow="fold")
    for name in names:
        table.add_row(Text(name, style="bold"), "")
        for column, cell in zip(columns, cells(name), strict=True):
            table.add_row(f"  {column}", cell)
    return table


def comparison_lines(c: TensorComparison, hex_bits: bool = False) -> str:
    """Both values at the worst element and their differences, at full precision."""
    if c.status == Status.ONE_SIDE:
        return c.note
    if c.status == Status.SHAPE:
        return c.note
    index = list(c.worst_index) if c.worst_index is not None else []
    lines = [
        f"element {index}: numpy {fmt(c.worst_numpy, c.numpy_dtype, hex_bits=hex_bits)} ({c.numpy_dtype})"
        f"  torch {fmt(c.worst_torch, c.torch_dtype, hex_bits=hex_bits)} ({c.torch_dtype})",
        f"mismatched elements: {c.n_bad} / {c.size} ({100.0 * c.n_bad / max(c.size, 1):.1f}%)",
        f"greatest abs difference {fmt(c.max_abs)}, rel {fmt(c.max_rel)}, ulp {fmt(c.max_ulp)}"
        f" (rtol {fmt(c.tolerance.rtol)}, atol {fmt(c.tolerance.atol)})",
        f"normwise error {fmt(c.norm_error)} (tolerance {fmt(c.norm_tolerance)})"
        + (": out" if c.norm_bad else ""),
    ]
    if c.note:
        lines.append(c.note)
    return "\n".join(lines)


def _divergence_text(result: RunResult, hex_bits: bool) -> Text:
    d = result.first_divergence
    if d is None and result.error is not None:
        return Text(f"First divergence: none in the {result.steps} steps before the error.")
    if d is None:
        return Text("First divergence: none — every step's local error is within tolerance.", style="green")
    how = "local error, both sides from the same weights" if d.local else "compared directly"
    text = Text()
    text.append(f"First divergence: step {d.step} (epoch {d.epoch}, batch {d.index}), {d.tensor}", style="bold red")
    text.append(f"  [{how}]\n")
    text.append(comparison_lines(d.comparison, hex_bits))
    text.append(f"\ndecided by: {d.decided_by()}")
    return text


def _rounding_text(rows: list[dict[str, Any]], engine: Engine) -> Text | None:
    """The pairs out of tolerance locally that the precision referee found to be rounding only."""
    rounded = [row for row in rows if row["rounding"]]
    if not rounded:
        return None
    counts = ", ".join(f"{row['tensor']} ({row['rounding']})" for row in rounded)
    text = Text("Rounding only (out of tolerance locally, but the same math: not a divergence), steps per tensor: "
                f"{counts}.", style="blue")
    summary = getattr(engine, "rounding_summary", "")
    if summary:
        text.append(f"\nFirst at {summary}.")
    return text


def precision_note(engine: Engine) -> str:
    """When the two sides compute in different precisions, what the comparison can resolve."""
    sides = _side_dtypes(engine)
    if len(sides) < 2 or sides["numpy"] == sides["torch"]:
        return ""
    low = min(sides.values(), key=lambda d: np.finfo(d).nmant)
    return (f"the NumPy side computes in {sides['numpy']}, torch in {sides['torch']}: they can agree only to "
            f"{low} rounding, and are compared at {low}'s tolerance")


def _side_dtypes(engine: Engine) -> dict[str, str]:
    """The float dtype of each side's weights (the run's computing precision), from the end state."""
    final = engine.final_state()
    out = {}
    for side in ("numpy", "torch"):
        dtypes = {np.asarray(w).dtype for w in final[side]["weights"].values() if np.asarray(w).dtype.kind == "f"}
        if len(dtypes) == 1:
            out[side] = dtypes.pop().name
    return out


def _drift_text(result: RunResult) -> Text:
    d = result.drift
    if d is None:
        return Text("Drift: none — free-running values stayed within tolerance.")
    # After a divergence the trajectories part for that reason: what drifts besides it is a side note.
    besides = ", besides the divergence" if result.first_divergence is not None else ""
    return Text(
        f"Drift (not a divergence: within tolerance locally{besides}): first out of tolerance at step "
        f"{d.first_step} in {d.first_tensor}; largest {fmt(d.max_abs)} in {d.max_abs_tensor} at step {d.max_abs_step}.",
        style="yellow",
    )


SHOWN_ELEMENTS = 6  # weights up to this size are printed element by element
SIDES = ("numpy", "torch", "abs difference")


def _final_table(engine: Engine, hex_bits: bool) -> _Fitting:
    """Each side's last loss and end weights, free-running, at full precision."""
    final = engine.final_state()
    cells: dict[str, tuple[str, str, str]] = {}
    numpy_loss, torch_loss = final["numpy"]["loss"], final["torch"]["loss"]
    if engine.next_step:  # before any step there is no loss: a NaN there would read as a NaN loss
        cells["loss (last step)"] = (fmt(numpy_loss, hex_bits=hex_bits), fmt(torch_loss, hex_bits=hex_bits),
                                     fmt(abs(numpy_loss - torch_loss)))
    values = loss_values(engine)
    for name in dict.fromkeys([*values["numpy"], *values["torch"]]):
        if name != "loss":  # the other values the scenario reports beside its loss (a thread's printed number)
            cells[f"{name} (last step)"] = _value_cells(values["numpy"].get(name), values["torch"].get(name),
                                                        hex_bits)
    numpy_w, torch_w = final["numpy"]["weights"], final["torch"]["weights"]
    for name in dict.fromkeys([*numpy_w, *torch_w]):
        cells[name] = _weight_cells(numpy_w.get(name), torch_w.get(name), hex_bits)
    return _side_by_side("End of the run (free-running)", "tensor", cells)


def loss_values(engine: Engine) -> dict[str, dict[str, np.generic]]:
    """Every loss-phase value of the last step run (the loss and what the scenario reports beside it), per side."""
    last = engine.trace.recent(engine.next_step - 1) if engine.next_step else None
    if last is None:
        return {"numpy": {}, "torch": {}}
    return {side: {key: np.asarray(value).reshape(-1)[0]  # in its own dtype: a float32 shows 9 digits
                   for key, value in getattr(last, side).items()
                   if np.size(value) == 1 and engine.phase_of(key) == "loss"}
            for side in ("numpy", "torch")}


def _value_cells(a: np.generic | None, b: np.generic | None, hex_bits: bool) -> tuple[str, str, str]:
    show = ["—" if x is None else fmt(x, hex_bits=hex_bits) for x in (a, b)]
    return show[0], show[1], "" if a is None or b is None else fmt(abs(float(a) - float(b)))


def _side_by_side(title: str, first: str, cells: dict[str, tuple[str, str, str]]) -> _Fitting:
    """NumPy, torch and their difference for each name: a table, or stacked where it would fold."""

    def wide() -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column(first, no_wrap=True)
        for name in SIDES:
            table.add_column(name, justify="right", overflow="fold")
        for name, row in cells.items():
            table.add_row(name, *row)
        return table

    numbers = [cell for row in cells.values() for cell in row]
    return _Fitting(wide, lambda: _stacked(title, cells, SIDES, cells.__getitem__), numbers)


def _weight_cells(a: Any, b: Any, hex_bits: bool) -> tuple[str, str, str]:
    def show(x: Any) -> str:
        if x is None:
            return "—"
        arr = np.asarray(x)
        if arr.size > SHOWN_ELEMENTS:
            return f"{arr.shape} {arr.dtype}"
        return " ".join(fmt_array(arr, hex_bits=hex_bits))

    diff = ""
    if a is not None and b is not None and np.size(a) == np.size(b):
        diff = fmt(float(np.max(np.abs(np.asarray(a, np.float64).ravel() - np.asarray(b, np.float64).ravel()))))
    return show(a), show(b), diff


def _metrics_table(engine: Engine, hex_bits: bool) -> _Fitting:
    last = engine.trace.metrics[-1]
    cells: dict[str, tuple[str, str, str]] = {}
    for name in dict.fromkeys([*last.numpy, *last.torch]):
        a, b = last.numpy.get(name), last.torch.get(name)
        diff = "" if a is None or b is None else fmt(abs(float(a) - float(b)))
        cells[name] = (_maybe(a, hex_bits), _maybe(b, hex_bits), diff)
    return _side_by_side(f"Metrics at the end of epoch {last.epoch}", "metric", cells)


def _maybe(value: Any, hex_bits: bool) -> str:
    return "—" if value is None else fmt(value, hex_bits=hex_bits)


def print_report(console: Console, engine: Engine, result: RunResult, **kwargs: Any) -> None:
    console.print(Printable(render(engine, result, **kwargs)))  # names and messages from files, escaped


# ---- JSON ------------------------------------------------------------------


def to_json(engine: Engine, result: RunResult, patches: list[str] | None = None) -> dict[str, Any]:
    """The ``--json`` object; floats round-trip exactly, NaN/Inf become strings."""
    s = engine.scenario
    d = result.first_divergence
    drift = result.drift
    final = engine.final_state()
    values = loss_values(engine)
    return {
        "scenario": s.name,
        "variant": s.variant,
        "steps": result.steps,
        "parity": result.parity,
        "stopped": result.stopped,
        "device": engine.device,
        "dtype": engine.dtype_name,
        "tf32": engine.tf32,
        "patches": patches or [],
        "precision": precision_note(engine) or None,
        "first_divergence": None if d is None else _divergence_json(d),
        "drift": None if drift is None else {
            "first_step": drift.first_step,
            "first_tensor": drift.first_tensor,
            "max_abs": json_number(drift.max_abs),
            "max_abs_step": drift.max_abs_step,
            "max_abs_tensor": drift.max_abs_tensor,
        },
        "tensors": {
            row["tensor"]: {
                "status": LABELS[row["status"]],
                "steps_out": row["steps_out"],
                "rounding": row["rounding"],
                "rounding_reason": row["rounding_reason"] or None,
                "max_abs": json_number(row["max_abs"]),
                "max_rel": json_number(row["max_rel"]),
                "worst_step": row["worst_step"],
            }
            for row in tensor_summary(engine)
        },
        "torch_only": engine.unmapped_torch,
        "metrics": [
            {"epoch": m.epoch, "step": m.step, "numpy": _nums(m.numpy), "torch": _nums(m.torch)}
            for m in engine.trace.metrics
        ],
        "final": {side: {"loss": json_number(v["loss"]),
                         "loss_values": {k: json_number(x) for k, x in values[side].items()},
                         "weights": {n: _nested(w) for n, w in v["weights"].items()}}
                  for side, v in final.items()},
        "error": None if result.error is None else error_text(result.error),
        "diagnosis": diagnosis_json(engine, result),
    }


def _divergence_json(d: Any) -> dict[str, Any]:
    c = d.comparison
    return {
        "step": d.step,
        "epoch": d.epoch,
        "batch": d.index,
        "tensor": d.tensor,
        "status": LABELS[c.status],
        "local": d.local,
        "index": list(c.worst_index) if c.worst_index is not None else None,
        "numpy": json_number(c.worst_numpy),
        "torch": json_number(c.worst_torch),
        "abs": json_number(c.max_abs),
        "rel": json_number(c.max_rel),
        "ulp": json_number(c.max_ulp),
        "mismatched": c.n_bad,
        "size": c.size,
        "rtol": c.tolerance.rtol,
        "atol": c.tolerance.atol,
        "norm_error": json_number(c.norm_error),
        "norm_tolerance": json_number(c.norm_tolerance),
        "decided_by": d.decided_by(),
        "referee": None if d.judgement is None else {
            "precision": d.judgement.referee_precision,
            "run_difference": json_number(d.judgement.run_diff),
            "referee_difference": json_number(d.judgement.referee_diff),
            "referee_relative": json_number(d.judgement.referee_rel),
            "rounding": d.judgement.rounding,
        },
        "note": c.note,
    }


def _nums(values: dict[str, Any]) -> dict[str, Any]:
    return {k: json_number(v) for k, v in values.items()}


def _nested(array: Any) -> Any:
    arr = np.asarray(array)
    if arr.dtype.kind == "f" and np.isfinite(arr).all():
        return arr.astype(np.float64).tolist()  # exact: every float32 is a float64
    if arr.ndim == 0:
        return json_number(arr[()])
    return [_nested(x) for x in arr]


# ---- diagnosis (gradstep.diagnosis) ------------------------------------------


def _findings(engine: Engine, result: RunResult) -> tuple[list[Any], str | None]:
    """The ranked findings at the first divergence, or why there are none."""
    if result.first_divergence is None:
        return [], None
    if hasattr(engine, "recorded_diagnosis"):  # a saved session: the diagnosis made when it was saved
        return engine.recorded_diagnosis()
    from gradstep.diagnosis import diagnose

    try:
        return diagnose(engine), None
    except Exception as error:  # the report must come out even if a diagnosis cannot be made
        return [], f"diagnosis failed: {type(error).__name__}: {error}"


def diagnosis_text(engine: Engine, result: RunResult) -> Text:
    """The "Diagnosis" section: ranked findings, each with its evidence."""
    findings, failure = _findings(engine, result)
    text = Text()
    d = result.first_divergence
    if d is None:
        text.append("Diagnosis: nothing to diagnose — no divergence.")
        return text
    text.append(f"Diagnosis at step {d.step}, most likely first:\n", style="bold")
    if failure:
        text.append(failure, style="red")
        return text
    if not findings:
        text.append(f"no rule fits the divergence in {d.tensor}; nothing is guessed. Compare the tensors above "
                    "by hand, or patch the suspect formula and replay.")
        return text
    if not any(f.step == d.step and f.tensors for f in findings):
        text.append(f"no rule explains the divergence in {d.tensor} itself; other findings:\n")
    for rank, f in enumerate(findings, 1):
        at = f"{Path(f.file).name}:{f.line}" if f.file and f.line else None
        where = ", ".join(str(x) for x in (f"step {f.step}" if f.step is not None else None, f.tensor,
                                            _side_words(f.side), f.function, at) if x)
        text.append(f"{rank}. [{f.confidence_label} {f.confidence:.2f}] {f.rule}", style="bold")
        text.append(f" — {where}\n")
        text.append(f"   {f.cause}\n")
        for line in f.evidence:
            text.append(f"   · {line}\n", style="dim")
    text.rstrip()
    return text


def _side_words(side: str | None) -> str | None:
    return None if side is None else ("both sides" if side == "both" else f"{side} side")


def diagnosis_json(engine: Engine, result: RunResult) -> list[dict[str, Any]]:
    findings, failure = _findings(engine, result)
    if failure:
        return [{"rule": "error", "cause": failure, "evidence": [], "confidence": 0.0, "step": None,
                 "tensor": None, "side": None, "function": None}]
    return [f.to_json() for f in findings]
