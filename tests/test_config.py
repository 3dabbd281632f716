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


def test_default_preset_is_standard() -> None:
    name, _, _ = resolve_learn(None, {})
    assert name == "standard"


def test_bad_flag_value_names_the_setting() -> None:
    with pytest.raises(UserError, match="'rank'"):
        resolve_learn("quick", {"rank": 0})
    with pytest.raises(UserError, match="'crop'"):
        resolve_learn("quick", {"crop": "zoom"})
    with pytest.raises(UserError, match="'format'"):
        resolve_animate("quick", {"format": "avi"})


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
