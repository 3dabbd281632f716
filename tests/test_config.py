"""Presets and flags: same validation, flags win, typos fail with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashcli.config import available_presets, load_preset, resolve_animate, resolve_learn
from flashcli.errors import UserError


def test_shipped_presets_load_and_build_core_settings() -> None:
    assert {"quick", "standard", "best"} <= set(available_presets())
    steps = {}
    for name in ("quick", "standard", "best"):
        _, config, _ = resolve_learn(name, {})
        steps[name] = config.train_settings(17, 64).steps
        _, animate = resolve_animate(name, {})
        assert animate.sample_settings(prompt=None).steps >= 1
    assert steps["quick"] < steps["standard"] < steps["best"]


def test_flags_override_the_preset_and_missing_flags_keep_it() -> None:
    _, preset_only, _ = resolve_learn("quick", {})
    name, config, animate_table = resolve_learn(
        "quick", {"steps": 7, "rank": None, "align": {"motion_align": False}}
    )
    assert name == "quick"
    assert animate_table == {"steps": 8}
    assert config.steps == 7
    assert config.rank == preset_only.rank
    settings = config.train_settings(9, 32)
    assert settings.steps == 7 and settings.frames == 9 and settings.size == 32
    assert settings.align.motion_align is False and settings.align.correspondence_align is True


def test_without_a_preset_learn_and_animate_run_exactly_as_the_standard_preset() -> None:
    # The README's promise: no --preset is --preset standard, setting for setting (not the models'
    # own field defaults, which could drift from the shipped file).
    assert resolve_learn(None, {}) == resolve_learn("standard", {})
    assert resolve_animate(None, {}) == resolve_animate("standard", {})
    assert resolve_learn(None, {})[1] != resolve_learn("quick", {})[1]


def test_bad_flag_value_names_the_setting() -> None:
    with pytest.raises(UserError, match="--rank 0"):
        resolve_learn("quick", {"rank": 0})
    with pytest.raises(UserError, match="--crop zoom"):
        resolve_learn("quick", {"crop": "zoom"})
    with pytest.raises(UserError, match="--format avi"):
        resolve_animate("quick", {"format": "avi"})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"format": "mov"}, "--format mov is not allowed; use one of mp4, gif, webp, png."),
        ({"steps": 0}, "--steps 0 is not allowed; use a whole number from 1 to 1000."),
        ({"fps": 0.0}, "--fps 0 is not allowed; use a number that is above 0 and at most 120."),
    ],
)
def test_a_bad_animate_flag_is_blamed_on_the_flag_with_what_it_accepts(flags: dict, message: str) -> None:
    # The issue: these ended with "check the flag or preset 'as learned'", which names neither the
    # flag nor what it takes.
    with pytest.raises(UserError) as caught:
        resolve_animate(None, flags, stored={"steps": 3})
    assert str(caught.value) == message


def test_a_bad_learn_flag_names_the_limit_of_the_model_that_refused_it() -> None:
    with pytest.raises(UserError) as caught:
        resolve_learn("quick", {"steps": 0})
    assert str(caught.value) == "--steps 0 is not allowed; use a whole number that is at least 1."
    with pytest.raises(UserError) as caught:  # the flag's own name, not the core field's
        resolve_learn("quick", {"ded_steps": -1})
    assert str(caught.value) == "--ded-steps -1 is not allowed; use a whole number from 0 to 100000."


def test_each_setting_has_one_default_the_core_models() -> None:
    # A preset that chooses nothing gets the core's own defaults, for learn and animate alike: there
    # is no second default in the config layer that could drift from the core's (rank 8 vs 16, ...).
    from flashcli.config import AnimateConfig, LearnConfig
    from flashcli.core.settings import SampleSettings, TrainSettings

    trained = LearnConfig().train_settings(17, 64)
    assert trained == TrainSettings(frames=17, size=64)
    assert AnimateConfig().sample_settings(prompt=None) == SampleSettings()
    for key in ("steps", "rank", "learning_rate", "seed", "checkpoint_every"):
        assert getattr(LearnConfig(), key) is None, key
    # The default preset is the defaults: it chooses nothing.
    _, standard, animate_table = resolve_learn(None, {})
    assert standard.train_settings(17, 64) == trained and animate_table == {}
    assert resolve_animate(None, {})[1].sample_settings(prompt=None) == SampleSettings()


def test_a_bad_stored_setting_blames_the_action_not_a_flag() -> None:
    with pytest.raises(UserError) as caught:
        resolve_animate(None, {}, stored={"steps": 0})
    message = str(caught.value)
    assert "stored with the action" in message and "--preset" in message
    assert "--steps" not in message and "from 1 to 1000" in message


def test_preset_with_a_typo_names_the_file_and_key(tmp_path: Path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text('description = "x"\n[learn]\nstepz = 10\n')
    with pytest.raises(UserError, match=r"mine.toml.*stepz"):
        load_preset(str(preset))


def test_preset_core_knobs_are_checked_by_the_core(tmp_path: Path) -> None:
    preset = tmp_path / "knobs.toml"
    preset.write_text('description = "x"\n[learn]\nsteps = 5\n[learn.core]\nwarmup_steps = 2\n')
    _, config, _ = resolve_learn(str(preset), {})
    assert config.train_settings(9, 32).warmup_steps == 2
    preset.write_text('description = "x"\n[learn.core]\nwarmup_stepz = 2\n')
    with pytest.raises(UserError, match="warmup_stepz"):
        load_preset(str(preset))


def test_broken_toml_and_unknown_preset_are_user_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("description = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_preset(str(broken))
    with pytest.raises(UserError, match="Unknown preset 'turbo'.*quick"):
        load_preset("turbo")


def test_animate_uses_the_table_stored_with_the_action_unless_a_preset_is_named() -> None:
    name, config = resolve_animate(None, {}, stored={"steps": 3})
    assert config.steps == 3 and name == "as learned"
    _, named = resolve_animate("best", {}, stored={"steps": 3})
    assert named.steps == resolve_animate("best", {})[1].steps != 3
    _, flagged = resolve_animate(None, {"steps": 5}, stored={"steps": 3})
    assert flagged.steps == 5


def test_a_preset_can_choose_the_sampler_and_a_bad_eta_names_it(tmp_path: Path) -> None:
    preset = tmp_path / "euler.toml"
    preset.write_text('description = "x"\n[animate]\nsteps = 4\n[animate.core]\neta = 0.0\n')
    _, config = resolve_animate(str(preset), {})
    assert config.sample_settings(prompt=None).eta == 0.0  # Euler, whatever the base ships
    assert resolve_animate(None, {}, stored={"steps": 3})[1].sample_settings(prompt=None).eta is None
    preset.write_text('description = "x"\n[animate.core]\neta = 1.5\n')
    with pytest.raises(UserError, match="eta"):
        resolve_animate(str(preset), {})


def test_the_base_shape_is_read_without_torch_and_agrees_with_the_loaded_base(tmp_path: Path) -> None:
    import subprocess
    import sys

    from flashcli.core.specs import load_base
    from flashcli.workflows.plan import BaseShape, base_shape

    probe = (
        "import sys; from flashcli.workflows.plan import base_shape; base_shape('tiny'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # cheap: a wrong --size fails before torch or the model loads
    shape, spec = base_shape("tiny"), load_base("tiny", device="cpu")
    assert shape is not None
    assert (shape.base_id, shape.frame_step, shape.size_multiple) == (
        spec.base_id,
        spec.frame_step,
        spec.size_multiple,
    )
    assert (shape.default_frames, shape.default_size) == (spec.default_frames, spec.default_size)
    assert shape == BaseShape.of(spec)
    assert base_shape(str(tmp_path)) is None  # not a base: loading it will say why
