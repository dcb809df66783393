"""The TUI's Textual-free parts: the element grid model, pair facts, frames, the debugger's moves."""

from pathlib import Path

import numpy as np
import pytest

from gradstep.compare import Status, Tolerance, compare_tensor
from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.tui.frame import INITIAL
from gradstep.tui.grid_model import DiffMode, GridModel, exact_ulps, split_number
from gradstep.tui.presenter import entry_view, error_text, status_view
from gradstep.tui.session import Debugger

TOL64 = Tolerance(1e-7, 1e-7)
FAULTS = str(Path(__file__).parent / "fixtures" / "faults.py")


def model(a, b, **kw):
    return GridModel("t", None if a is None else np.asarray(a), None if b is None else np.asarray(b), TOL64, **kw)


def test_split_number_puts_the_point_first():
    assert split_number("-12.5e-07") == ("-12", ".5e-07")
    assert split_number("1e-05") == ("1", "e-05")
    assert split_number("nan") == ("nan", "")
    assert split_number("0x3fd3333333333333") == ("0x3fd3333333333333", "")


def test_scalar_and_1d_read_naturally():
    scalar = model(np.float64(1.5), np.float64(1.5))
    assert (scalar.rows, scalar.cols, scalar.index_of(0, 0)) == (1, 1, ())
    column = model(np.arange(5.0), np.arange(5.0))
    assert (column.rows, column.cols, column.index_of(3, 0)) == (5, 1, (3,))
    assert column.cell(3, 0).numpy == "3"


def test_every_element_at_full_precision_with_aligned_points():
    a = np.array([[0.1, -12.25], [3.0, 1e-9]])
    m = model(a, a)
    texts = [m.numpy_layout.place(m.cell(r, c).numpy) for r in range(2) for c in range(2)]
    assert {t.strip() for t in texts} == {"0.1", "-12.25", "3", "1e-09"}
    points = {t.index(".") for t in texts if "." in t}
    assert len(points) == 1 and len({len(t) for t in texts}) == 1  # same width, one decimal column


def test_float32_values_are_shown_in_their_own_dtype():
    a = np.array([0.1], dtype=np.float32)
    m = GridModel("t", a, a.astype(np.float64), Tolerance(1.3e-6, 1e-5))
    cell = m.cell(0, 0)
    assert cell.numpy == "0.1" and cell.torch == "0.10000000149011612"
    assert not cell.bad  # equal as floats within float32's tolerance


def test_out_of_tolerance_elements_are_flagged_and_the_cursor_starts_on_the_worst():
    a = np.zeros((3, 4))
    b = a.copy()
    b[2, 1] = 1.0
    b[0, 3] = 1e-3
    facts = facts_of(a, b)
    m = model(a, b, worst_index=facts.worst_index)
    assert m.worst_cell() == (2, 1)
    assert m.cell(2, 1).bad and m.cell(0, 3).bad and not m.cell(1, 1).bad


def test_diff_modes_and_hex():
    a, b = np.array([[1.0]]), np.array([[np.nextafter(1.0, 2.0)]])
    m = model(a, b)
    assert m.cell(0, 0).diff == "2.220446049250313e-16"
    m.set_mode(DiffMode.REL)
    assert m.cell(0, 0).diff == "2.2204460492503126e-16"
    m.set_mode(DiffMode.ULP)
    assert m.cell(0, 0).diff == "1"
    m.set_hex(True)
    assert m.cell(0, 0).numpy == "0x3ff0000000000000" and m.cell(0, 0).torch == "0x3ff0000000000001"
    assert DiffMode.ULP.next() is DiffMode.ABS


def test_exact_ulps_where_float64_counting_loses_them():
    a = np.array([0.012127449999999984, 1.0, -0.0, np.nan, np.nan])
    b = np.array([0.012127449999999994, np.nextafter(1.0, 2.0), 0.0, 1.0, np.nan])
    assert exact_ulps(a, b).tolist() == [6, 1, 0, np.iinfo(np.uint64).max, 0]


def test_element_details_in_full():
    m = model(np.array([[0.18]]), np.array([[0.059999999999999984]]))
    info = m.element(0, 0)
    assert (info.numpy, info.torch, info.index) == ("0.18", "0.059999999999999984", "t[0, 0]")
    assert info.bad and info.abs == "0.12000000000000001" and info.rel == "0.6666666666666667"
    assert info.numpy_hex == "0x3fc70a3d70a3d70a"


def test_rank_3_is_sliced_with_a_changeable_index():
    a = np.arange(24.0).reshape(2, 3, 4)
    m = model(a, a, worst_index=(1, 2, 3))
    assert m.slice_index == 1 and m.slice_label() == "[1, :, :] 2/2"
    assert (m.rows, m.cols) == (3, 4) and m.index_of(2, 3) == (1, 2, 3) and m.cell(2, 3).numpy == "23"
    m.set_slice(2)  # wraps
    assert m.slice_index == 0 and m.cell(0, 0).numpy == "0"


def test_one_side_and_shape_mismatch_have_no_difference():
    one = model(np.ones((2, 2)), None)
    assert not one.comparable and one.cell(0, 0).numpy == "1" and one.cell(0, 0).torch is None
    shape = model(np.ones((3, 2)), np.ones((2, 2)))
    assert not shape.comparable and (shape.rows, shape.cols) == (3, 2)
    assert shape.cell(2, 0).torch is None and shape.cell(0, 0).diff is None
    same_size = model(np.ones((1, 1)), np.ones(()))
    assert same_size.comparable and same_size.cell(0, 0).diff == "0"


def test_a_big_tensor_formats_only_what_is_looked_at():
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    m = GridModel("w", a, a, Tolerance(1.3e-6, 1e-5), worst_index=(1000, 1500))
    m.cell(1000, 1500)
    m.cell(2047, 2047)
    assert len(m._tiles) <= 4  # primed tile, the worst element's, the last one: never the whole


def test_the_apps_facts_of_a_pair_nan_and_shapes():
    assert facts_of(np.array([1.0, np.nan]), np.array([1.0, 2.0])).status == Status.NONFINITE
    assert facts_of(np.ones(3), np.ones(4)).status == Status.SHAPE
    assert facts_of(None, np.ones(4)).status == Status.ONE_SIDE


def facts_of(a, b):
    """What the app computes of a pair for its list and cursor: the comparison kernel's, without ULPs."""
    return compare_tensor("t", a, b, tolerance=TOL64, ulp=False)


@pytest.fixture
def neuron():
    return Debugger(Engine(load_scenario("neuron", "as-posted")))


def test_debugger_starts_on_the_initial_weights(neuron):
    frame = neuron.show(INITIAL)
    assert frame.step == INITIAL and frame.frontier == 0
    assert [(e.key, e.phase, e.status) for e in frame.entries] == [
        ("before w", "before", Status.OK), ("before b", "before", Status.OK)]
    assert "start" in status_view(frame).position


def test_one_step_shows_step_zero_as_the_thread_printed(neuron):
    frame = neuron.forward(INITIAL)
    assert frame.step == 0 and frame.frontier == 1
    after_w, after_b = frame.entry("after w"), frame.entry("after b")
    assert (float(after_w.numpy[0, 0]), float(after_w.torch[0, 0])) == (0.18, pytest.approx(0.06))
    assert (float(after_b.numpy[0, 0]), float(after_b.torch[0, 0])) == (0.22, pytest.approx(0.34))
    assert after_w.status == Status.DIVERGED and entry_view(after_w).worst == "0.12000000000000001"
    phases = [e.phase for e in frame.entries]
    assert phases == sorted(phases, key=["before", "input", "forward", "loss", "grad", "update", "after"].index)


def test_the_status_counts_steps_in_good_english():
    debugger = Debugger(Engine(load_scenario("neuron", "fixed")))
    frame = debugger.forward(INITIAL)
    assert status_view(frame).divergence == "first divergence: none in the 1 step run so far"
    frame = debugger.forward(frame.step)
    assert status_view(frame).divergence == "first divergence: none in the 2 steps run so far"


def test_viewing_old_steps_never_moves_the_frontier(neuron):
    frame = neuron.forward(INITIAL)
    frame = neuron.forward(frame.step)
    frame = neuron.forward(frame.step)
    assert (frame.step, frame.frontier) == (2, 3)
    frame = neuron.back(frame.step)
    frame = neuron.back(frame.step)
    assert (frame.step, frame.frontier) == (0, 3)
    frame = neuron.forward(frame.step)  # from an old step: the next old step, nothing computed
    assert (frame.step, frame.frontier) == (1, 3)
    frame = neuron.goto(INITIAL, frame.step)
    assert frame.step == INITIAL and neuron.engine.next_step == 3
    assert "over" in neuron.forward(2).notice  # neuron has 3 steps


def test_scenario_errors_come_back_as_frames():
    debugger = Debugger(Engine(load_scenario(FAULTS, "raises")))
    frame = debugger.run(None, None, INITIAL)
    assert frame.error is not None and frame.step == 2
    assert (frame.error.step, frame.error.side, frame.error.function) == (3, "numpy", "backward")
    line = next(i for i, text in enumerate(Path(FAULTS).read_text().splitlines(), 1) if "planted failure" in text)
    assert frame.error.location.endswith(f"faults.py:{line}")
    text = error_text(frame.error)
    assert "step 3" in text and "numpy" in text and "backward" in text and f"faults.py:{line}" in text


def test_keymap_file(tmp_path, monkeypatch):
    from gradstep.tui.keymap import keymap_path, load_keymap

    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\nstep = "j,space"\nstep_back = "k"\n')
    monkeypatch.setenv("GRADSTEP_KEYMAP", str(path))
    assert keymap_path() == path
    assert load_keymap() == {"step": "j,space", "step_back": "k"}
    path.write_text("step = 3\n")
    with pytest.raises(ValueError, match="strings"):
        load_keymap()
    assert load_keymap(tmp_path / "missing.toml") == {}


def test_largest_difference_is_the_kernels_where_infinities_agree():
    """W's largest |Δ| is the list's Δ: the kernel's, where inf against inf is no difference and NaN against a
    number is the largest."""
    a = np.array([[np.inf, 1.0], [2.0, 3.0]])
    m = model(a, np.array([[np.inf, 1.5], [2.0, 4.0]]), worst_by="abs")
    assert m.largest_abs_index() == (1, 1)
    m = model(a, np.array([[np.inf, 1.5], [2.0, np.nan]]), worst_by="abs")
    assert m.largest_abs_index() == (1, 1)
    m = model(a, np.array([[np.inf, 1.5], [2.0, 3.0]]), worst_by="abs")
    assert m.largest_abs_index() == (0, 1)
