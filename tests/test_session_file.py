"""Saved sessions: a round trip is bit for bit, every kind of bad file is refused with one clear message."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gradstep import session_zip
from gradstep.engine import Engine
from gradstep.loader import load_scenario
from gradstep.patch import Patch
from gradstep.recorded import ReadOnlyError, RecordedRun, StepNotRecorded
from gradstep.session_file import FORMAT_VERSION, SessionFileError, is_session_file, load, save
from gradstep.session_tree import Decoder, Encoder

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
ROOT = Path(__file__).resolve().parent.parent
FAULTS = str(Path(__file__).parent / "fixtures" / "faults.py")
PAYLOAD_NAN = np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view(np.float64)[0]


def ran(name: str, variant: str, steps: int | None = None, **trace: int) -> Engine:
    engine = Engine(load_scenario(name, variant))
    for field, value in trace.items():
        setattr(engine.trace, field, value)
    engine.run(steps=steps)
    return engine


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """linreg run to the end, with awkward values planted in its window and a checkpoint, saved."""
    engine = ran("linreg", "as-posted")
    record = engine.trace.recent(engine.trace.window_steps()[-1])
    record.numpy["x"][:] = np.array([-0.0, np.nan, np.float32(1e-45), -np.inf], dtype=np.float32)
    record.torch["loss"] = np.float32(-0.0)  # a NumPy scalar, not a 0-d array: it must come back as one
    checkpoint = engine.trace.checkpoints[0]
    checkpoint.numpy["weights"]["w"] = np.array([PAYLOAD_NAN, 5e-324, -0.0])  # a NaN payload, a subnormal
    checkpoint.numpy["state"].update({"eps": -0.0, "big": float("inf"), "keys": {1: (2, 3.5)}, "obj": object()})
    engine.patches = [Patch("numpy.backward", "def backward(w, a, b, hp):\n    return {}\n")]
    path = tmp_path_factory.mktemp("sessions") / "linreg.gradstep"
    saved = save(engine, path)
    return engine, saved


def same(a, b, where: str = "") -> None:
    """Equal bit for bit: arrays by dtype, shape and bytes; tensors too; floats by their bits; trees by shape."""
    if isinstance(a, (np.ndarray, np.generic)):
        assert type(a) is type(b), where
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), where
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.numpy().tobytes() == b.numpy().tobytes(), where
    elif isinstance(a, float):
        assert type(b) is float and struct.pack("<d", a) == struct.pack("<d", b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), where


# ---- the round trip ---------------------------------------------------------------


def test_round_trip_is_bit_for_bit(planted):
    engine, saved = planted
    run = RecordedRun.open(saved.path)
    for name in ("max_abs", "max_rel", "n_bad", "status", "losses"):
        same(getattr(engine.trace, name), getattr(run.trace, name), name)
    assert run.trace.keys == engine.trace.keys and run.trace.interval == engine.trace.interval
    assert run.trace.window_steps() == engine.trace.window_steps()
    for step in engine.trace.window_steps():
        a, b = engine.trace.recent(step), run.record(step)
        assert (a.step, a.epoch, a.index, a.metrics) == (b.step, b.epoch, b.index, b.metrics)
        for side in ("numpy", "torch", "local"):
            same(getattr(a, side), getattr(b, side), f"step {step} {side}")
    assert sorted(run.trace.checkpoints) == sorted(engine.trace.checkpoints)
    for step, checkpoint in engine.trace.checkpoints.items():
        state = dict(checkpoint.numpy["state"])
        state.pop("obj", None)  # an arbitrary object: left out, with a note
        same({**checkpoint.numpy, "state": state}, dict(run.trace.checkpoints[step].numpy), f"checkpoint {step}")
        same(dict(checkpoint.torch), dict(run.trace.checkpoints[step].torch), f"checkpoint {step} torch")
    same(engine.initial_weights(), run.initial_weights())
    same(engine.final_state(), run.final_state())
    assert run.result() == engine.result("end")
    assert run.first_divergence == engine.first_divergence and run.drift() == engine.drift()
    assert run.patches == engine.patches
    assert any("obj" in note and "without pickle" in note for note in saved.notes)


def test_the_planted_values_come_back(planted):
    _, saved = planted
    run = RecordedRun.open(saved.path)
    record = run.record(run.trace.window_steps()[-1])
    x = record.numpy["x"]
    assert math.copysign(1, x[0]) == -1 and np.isnan(x[1]) and x[2] == np.float32(1e-45) and x[3] == -np.inf
    assert isinstance(record.torch["loss"], np.float32)
    w = run.trace.checkpoints[0].numpy["weights"]["w"]
    assert w.view(np.uint64)[0] == 0x7FF8_0000_0000_0001 and w[1] == 5e-324
    assert run.trace.checkpoints[0].numpy["state"]["keys"] == {1: (2, 3.5)}


def test_what_the_file_says_of_itself(planted):
    _, saved = planted
    session = load(saved.path)
    assert session.format_version == FORMAT_VERSION
    assert set(session.versions) == {"gradstep", "numpy", "torch", "python"}
    assert session.scenario.name == "linreg" and session.scenario.variant == "as-posted"
    assert "SCENARIO" in session.scenario.source  # the source as text, to read
    assert session.options["device"] == "cpu"
    assert is_session_file(saved.path) and not is_session_file(ROOT / "README.md")


def test_loaded_arrays_are_read_only(planted):
    run = RecordedRun.open(planted[1].path)
    record = run.record(run.trace.window_steps()[0])
    with pytest.raises(ValueError):
        record.numpy["x"][...] = 0


def test_recorded_run_never_runs_and_says_which_steps_it_holds(tmp_path):
    engine = ran("fizzbuzz", "as-posted", steps=30, budget_bytes=1 << 20)
    path = save(engine, tmp_path / "fb.gradstep").path
    run = RecordedRun.open(path)
    window = run.trace.window_steps()
    assert 0 in window  # the first divergence's step, recomputed for the file though the window had lost it
    missing = next(s for s in range(30) if s not in window)
    with pytest.raises(StepNotRecorded, match=f"step {missing}: only its summary was saved; full tensors saved"):
        run.record(missing)
    with pytest.raises(IndexError):
        run.record(30)
    with pytest.raises(ReadOnlyError):
        run.step()
    assert [c.key for c in run.compare(0)] == [c.key for c in engine.compare(0)]
    assert run.compute_order(run.record(29)) == engine.compute_order(engine.record(29))
    assert run.position(29) == engine.position(29)
    findings, error = run.recorded_diagnosis()
    assert error is None and findings and findings[0].rule == "ratio"


def test_a_run_that_stopped_on_an_error_keeps_it(tmp_path):
    engine = Engine(load_scenario(FAULTS, "raises"))
    result = engine.run(steps=6)
    assert result.error is not None
    run = RecordedRun.open(save(engine, tmp_path / "f.gradstep", result).path)
    assert run.result().stopped == "error" and str(run.result().error) == str(result.error)
    assert type(run.last_error.error).__name__ == type(result.error.error).__name__


def test_nan_run_keeps_its_first_nonfinite(tmp_path):
    engine = Engine(load_scenario(FAULTS, "nan"))
    engine.run(steps=5)
    run = RecordedRun.open(save(engine, tmp_path / "n.gradstep").path)
    assert run.first_nonfinite == engine.first_nonfinite is not None


def test_an_unwritable_place_is_a_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SessionFileError, match="cannot write it"):
        save(ran("neuron", "as-posted"), blocker / "sub" / "s.gradstep")


def test_tree_codec_keeps_types_and_drops_objects():
    arrays: list[np.ndarray] = []

    def put(a: np.ndarray) -> str:
        arrays.append(a)
        return str(len(arrays) - 1)

    value = {"f": [-0.0, math.inf, -math.inf, 1e-310], "t": (1, "a", None, True), 3: {"$x": 1},
             "s": np.float32(2.5), "o": np.array([object()], dtype=object), "fn": len}
    encoder = Encoder(put)
    tree = json.loads(json.dumps(encoder.encode(value), allow_nan=False))
    back = Decoder(lambda ref: arrays[int(ref)]).decode(tree)
    same({k: v for k, v in value.items() if k not in ("o", "fn")}, back)
    assert len(encoder.notes) == 2


# ---- bad files: refused, one message each -----------------------------------------


@pytest.fixture
def good(tmp_path) -> Path:
    return save(ran("neuron", "as-posted"), tmp_path / "good.gradstep").path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(path: Path, target: Path, change) -> Path:
    files = members(path)
    change(files)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return target


def manifest_of(files: dict[str, bytes]) -> dict:
    return json.loads(files["session.json"])


def set_manifest(files: dict[str, bytes], manifest: dict) -> None:
    files["session.json"] = json.dumps(manifest).encode()


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=allow_pickle)
    return out.getvalue()


def refused(path: Path, message: str) -> None:
    before = sorted(os.listdir(path.parent))
    with pytest.raises(SessionFileError, match=message) as caught:
        RecordedRun.open(path)
    assert str(path) in str(caught.value)
    assert sorted(os.listdir(path.parent)) == before  # loading wrote nothing


def test_a_truncated_file(good, tmp_path):
    cut = tmp_path / "cut.gradstep"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refused(cut, "not a zip file, or a truncated one")


def test_not_a_zip(tmp_path):
    text = tmp_path / "notes.gradstep"
    text.write_text("hello")
    refused(text, "not a zip file")


def test_no_such_file(tmp_path):
    with pytest.raises(SessionFileError, match="no such file"):
        load(tmp_path / "nothing.gradstep")


def test_a_zip_without_a_manifest(good, tmp_path):
    refused(rewrite(good, tmp_path / "bare.gradstep", lambda f: f.pop("session.json")), "it has no session.json")


def test_malformed_json(good, tmp_path):
    bad = rewrite(good, tmp_path / "json.gradstep", lambda f: f.update({"session.json": b'{"format": '}))
    refused(bad, "session.json is not valid JSON")


def test_another_format(good, tmp_path):
    def change(files):
        set_manifest(files, {**manifest_of(files), "format": "something-else"})

    refused(rewrite(good, tmp_path / "other.gradstep", change), "not a gradstep session: its manifest's format")


def test_a_future_version(good, tmp_path):
    def change(files):
        set_manifest(files, {**manifest_of(files), "format_version": 3})

    refused(rewrite(good, tmp_path / "v3.gradstep", change),
            f"made by a newer gradstep: format 3, this one reads up to {FORMAT_VERSION}")


def test_a_planted_pickle(good, tmp_path):
    def change(files):
        files["arrays/0.npy"] = npy_bytes(np.array([{"evil": 1}], dtype=object), allow_pickle=True)

    refused(rewrite(good, tmp_path / "pickle.gradstep", change), r"arrays/0.npy holds Python objects \(a pickle\)")


def test_an_absurd_shape(good, tmp_path):
    def change(files):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (10**6, 10**6)})
        files["arrays/0.npy"] = header.getvalue() + b"\0" * 64

    refused(rewrite(good, tmp_path / "huge.gradstep", change), "declares 1000000000000 elements")


def test_a_shape_the_file_cannot_hold(good, tmp_path):
    def change(files):
        files["arrays/0.npy"] = npy_bytes(np.zeros(1000))[:200]  # the header says 8000 bytes follow

    refused(rewrite(good, tmp_path / "short.gradstep", change), "declares 8000 bytes of data")


def test_a_missing_array(good, tmp_path):
    refused(rewrite(good, tmp_path / "missing.gradstep", lambda f: f.pop("arrays/3.npy")),
            "refers to arrays/3.npy, which is not in the file")


def test_inconsistent_summaries(good, tmp_path):
    def change(files):
        ref = manifest_of(files)["session"]["summaries"]["max_abs"]["$array"]
        files[ref] = npy_bytes(np.zeros((2, 5)))

    refused(rewrite(good, tmp_path / "summary.gradstep", change), r"summaries max_abs has shape \(2, 5\)")


def test_a_type_that_is_not_allowed(good, tmp_path):
    def change(files):
        manifest = manifest_of(files)
        manifest["session"]["result"]["drift"] = {"$dataclass": "os.system", "fields": {}}
        set_manifest(files, manifest)

    refused(rewrite(good, tmp_path / "type.gradstep", change), "'os.system' is not a type a session file may hold")


def test_a_zip_bomb_is_refused_before_inflating(good, tmp_path, monkeypatch):
    bomb = rewrite(good, tmp_path / "bomb.gradstep", lambda f: f.update({"arrays/999.npy": bytes(8 << 20)}))
    monkeypatch.setattr(session_zip, "MAX_TOTAL_BYTES", 4 << 20)
    refused(bomb, "would decompress to .* bytes, over the 4194304-byte limit")


# ---- the command line ---------------------------------------------------------------


def gradstep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "gradstep", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_check_save_then_open_from_elsewhere(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    done = gradstep("check", "neuron", "--variant", "as-posted", "--save", "s.gradstep", cwd=here)
    assert done.returncode == 1, done.stderr
    assert "session saved to s.gradstep" in done.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (here / "s.gradstep").stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any file, not private
    report = gradstep("open", "../here/s.gradstep", "--report", cwd=there)
    assert report.returncode == 1, report.stderr
    assert report.stdout == done.stdout  # the same report, from the file: nothing was run
    assert "recorded session ../here/s.gradstep: saved" in report.stderr
    routed = gradstep("../here/s.gradstep", "--report", cwd=there)  # `gradstep FILE` works like `gradstep open FILE`
    assert routed.returncode == 1 and routed.stdout == done.stdout


def test_memory_sets_the_trace_budget_and_so_the_size_of_a_saved_session(tmp_path):
    from gradstep.session_file import load

    sizes, windows = {}, {}
    for mib in ("2", "8"):
        done = gradstep("check", "fizzbuzz", "--variant", "fixed", "--steps", "150", "--memory", mib,
                        "--save", f"{mib}.gradstep", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        session = load(tmp_path / f"{mib}.gradstep")
        assert session.options["memory_mb"] == float(mib)
        sizes[mib], windows[mib] = (tmp_path / f"{mib}.gradstep").stat().st_size, len(session.window.steps)
    assert windows["2"] < windows["8"] < 150  # fizzbuzz steps are ~0.4 MB: the budget decides
    assert sizes["2"] < 3 << 20 < 6 << 20 < sizes["8"] < 9 << 20


def test_open_json_is_the_json_check_printed(tmp_path):
    done = gradstep("check", "neuron", "--variant", "as-posted", "--json", "--save", "s.gradstep", cwd=tmp_path)
    reopened = gradstep("open", "s.gradstep", "--json", cwd=tmp_path)
    assert done.returncode == reopened.returncode == 1
    assert json.loads(reopened.stdout) == json.loads(done.stdout)


def test_open_refuses_bad_files_and_running_options(tmp_path, good):
    (tmp_path / "bad.gradstep").write_text("not a session")
    done = gradstep("open", "bad.gradstep", cwd=tmp_path)
    assert done.returncode == 2 and "bad.gradstep: not a gradstep session" in done.stderr
    assert "Traceback" not in done.stderr
    done = gradstep("open", str(good), "--variant", "fixed", cwd=tmp_path)
    assert done.returncode == 2 and "--variant: not for a saved session" in done.stderr
    done = gradstep("open", "neuron", "--report", cwd=tmp_path)
    assert done.returncode == 2 and "--report and --json are for a saved session" in done.stderr
    assert "open" in gradstep("--help", cwd=tmp_path).stdout
