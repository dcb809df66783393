"""Every key of the main screen and the patch editor, named for what it does; each has an id, so users can remap it.

Moves that need the engine are app actions (``app.step``); the rest act on
the view. The footer shows them in this order, so the stepping keys come
first; the help screen (``?``) lists them all with their ids.
"""

from __future__ import annotations

from textual.binding import Binding

ENGINE_BINDINGS = [
    Binding("n,space", "app.step", "Step", tooltip="Step forward: the next step (run it if it is new)", id="step"),
    Binding("b", "app.step_back", "Back", tooltip="Step back (recomputed from checkpoints, not replayed)",
            id="step_back"),
    Binding("g", "app.jump", "Go to", tooltip="Jump to a step (runs up to it if not run yet)", id="jump"),
    Binding("c", "app.continue_run", "Continue", tooltip="Continue to the first divergence", id="continue"),
    Binding("i", "app.run_nonfinite", "To NaN", tooltip="Run to the first NaN/Inf", id="run_nonfinite"),
    Binding("r", "app.run_steps", "Run N", tooltip="Run N steps on from the viewed step", id="run_steps"),
    Binding("e", "app.run_end", "To end", tooltip="Run to the end of the scenario", id="run_end"),
    Binding("escape", "app.interrupt", "Stop", tooltip="Stop the run in progress, or the diagnosis", id="interrupt"),
    Binding("ctrl+s", "app.save_session", "Save",
            tooltip="Save the session to a file to share (opens read-only: gradstep open FILE)", id="save_session"),
    Binding("question_mark", "app.help", "Help", tooltip="This list of keys", id="help"),
    Binding("q", "app.quit", "Quit", tooltip="Quit gradstep", id="quit"),
]

VIEW_BINDINGS = [
    Binding("full_stop", "tensor(1)", "Next", tooltip="Next tensor", id="next_tensor"),
    Binding("comma", "tensor(-1)", "Prev", tooltip="Previous tensor", id="previous_tensor"),
    Binding("greater_than_sign", "diverged(1)", "Next ✗", tooltip="Next tensor out of tolerance",
            id="next_diverged"),
    Binding("less_than_sign", "diverged(-1)", "Prev ✗", tooltip="Previous tensor out of tolerance",
            id="previous_diverged"),
    Binding("slash", "find", "Find", tooltip="Find a tensor by name", id="find_tensor"),
    Binding("x", "toggle_hex", "Hex", tooltip="Show the exact bits in hex, or shortest decimals", id="toggle_hex"),
    Binding("d", "diff_mode", "Abs/rel/ULP", tooltip="Switch the difference: absolute, relative, ULPs",
            id="difference_mode"),
    Binding("y", "copy('numpy')", "Copy", tooltip="Copy the NumPy element under the cursor, full precision",
            id="copy_numpy"),
    Binding("Y", "copy('torch')", "Copy torch", tooltip="Copy the torch element under the cursor, full precision",
            id="copy_torch", show=False),
    Binding("right_square_bracket", "slice(1)", "Slice", tooltip="Next 2-d slice of a rank > 2 tensor",
            id="next_slice"),
    Binding("left_square_bracket", "slice(-1)", "Slice-", tooltip="Previous 2-d slice of a rank > 2 tensor",
            id="previous_slice", show=False),
    Binding("W", "worst_by", "Worst by", show=False,
            tooltip="What w and the cursor's start call worst: most beyond tolerance, or largest |Δ| (the list's Δ)",
            id="worst_by"),
    Binding("t", "pane('tensors')", "Tensors", tooltip="Show (compact) or focus the tensor list", id="show_tensors"),
    Binding("p", "pane('plot')", "Plot", tooltip="Show or hide the loss plot", id="show_plot"),
]

PATCH_BINDINGS = [
    Binding("f", "app.edit_patch", "Patch", tooltip="Patch a formula in the editor; applying replays from step 0",
            id="edit_patch"),
    Binding("u", "app.undo_patch", "Undo patch", tooltip="Undo the last patch (replays from step 0)",
            id="undo_patch"),
    Binding("U", "app.redo_patch", "Redo patch", tooltip="Redo the patch undone last (replays from step 0)",
            id="redo_patch", show=False),
    Binding("R", "app.reset_patches", "Reset patches",
            tooltip="Back to the scenario's original formulas (replays; redo brings the patches back)",
            id="reset_patches", show=False),
]

DIAGNOSIS_BINDINGS = [
    Binding("a", "diagnosis", "Diagnose",
            tooltip="Diagnose the step shown and show the findings (again: back to the tensor)", id="diagnose"),
]

# Workshops: a layout for the projector, and a picture of the screen for the handout.
SHOW_BINDINGS = [
    Binding("P", "present", "Present",
            tooltip="Presentation mode: the step in big digits, the tensor, its worst element and the diagnosis; "
                    "again: back to the normal layout", id="present"),
    Binding("S", "app.save_screenshot", "Screenshot",
            tooltip="Save the screen as an SVG file (in $GRADSTEP_SCREENSHOT_DIR, else the current directory)",
            id="screenshot"),
]

# The patch editor: keys a TextArea does not type (priority, so they work with the cursor in the text). Each
# runs after the keys before it have reached the text (``in_order``): typed, then applied.
EDITOR_BINDINGS = [
    Binding("ctrl+r,f5", "in_order('apply')", "Apply & replay",
            tooltip="Check the patch on the step's inputs, swap it in and replay from step 0 to the step",
            id="patch_apply", priority=True),
    Binding("escape", "in_order('close')", "Close",
            tooltip="Close the editor, keeping the text; during a replay: cancel it", id="patch_close", priority=True),
    Binding("ctrl+o", "in_order('choose')", "Formulas", tooltip="Choose the formula to edit (Enter opens it)",
            id="patch_choose", priority=True),
    Binding("f2", "in_order('revert')", "Revert", tooltip="Put back the formula in force, dropping the text typed",
            id="patch_revert", priority=True),
]
