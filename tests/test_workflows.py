"""Settings resolved once (flashcli.workflows.plan): a frame count or size is checked in one place
against the base, with one sentence per kind of mistake, and every value has one source, in order:
flag, preset (or the action's stored table), the action as learned, the base."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from flashcli.config import resolve_animate, resolve_learn
from flashcli.errors import UserError
from flashcli.workflows.plan import BaseShape, base_shape, plan_animate, plan_learn

TINY = BaseShape("tiny", frame_step=4, size_multiple=8, default_frames=17, default_size=64, default_fps=8.0)


def learn_plan(flags: dict, preset: str = "standard"):
    name, config, table = resolve_learn(preset, flags)
    return plan_learn(name, config, table, TINY, flags)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"frames": 8},
            "--frames 8 does not fit base 'tiny', which takes 4k+1 frames; "
            "use --frames 9, the nearest that fits.",
        ),
        ({"frames": 3}, "--frames 3 is not allowed; use 4k+1 frames from 5 to 257 for base 'tiny'."),
        ({"frames": 300}, "--frames 300 is not allowed; use 4k+1 frames from 5 to 257 for base 'tiny'."),
        (
            {"size": 63},
            "--size 63 does not fit base 'tiny', which takes multiples of 8; "
            "use --size 64, the nearest that fits.",
        ),
        ({"size": 4000}, "--size 4000 is not allowed; use a multiple of 8 from 16 to 2048 for base 'tiny'."),
        ({"size": 8}, "--size 8 is not allowed; use a multiple of 8 from 16 to 2048 for base 'tiny'."),
    ],
)
def test_a_shape_mistake_gets_one_sentence_for_its_kind(flags: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        learn_plan(flags)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"size": "60x36"},
            "--size 60x36 does not fit base 'tiny', which takes multiples of 8; "
            "use --size 64x40, the nearest that fits.",
        ),
        (
            {"size": "4000x480"},
            "--size 4000x480 is not allowed; use a multiple of 8 from 16 to 2048 for base 'tiny'.",
        ),
        (
            {"size": "64by32"},
            "--size 64by32 is not a frame size; use WxH (width x height, e.g. 832x480) or N for N x N.",
        ),
    ],
)
def test_a_width_by_height_mistake_gets_one_sentence_with_the_nearest_size(flags: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        learn_plan(flags)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "size"), [("64x32", (64, 32)), ("32X64", (32, 64)), ("48", (48, 48))])
def test_learn_takes_width_by_height_or_a_square_side(text: str, size: tuple[int, int]) -> None:
    plan = learn_plan({"size": text})
    assert plan.size == size and plan.train.frame_size == size and plan.train.size == size[1]


def test_animate_defaults_to_the_width_and_height_the_action_was_learned_at() -> None:
    learned = SimpleNamespace(name="weld", frames=9, frame_size=(64, 32), fps=12.0)
    name, config = resolve_animate(None, {}, stored={})
    plan = plan_animate(name, config, TINY, learned, None, {})  # type: ignore[arg-type]
    assert plan.size == (64, 32) and plan.config.size == "64x32"
    name, config = resolve_animate(None, {"size": "32x48"}, stored={})
    assert plan_animate(name, config, TINY, learned, None, {"size": "32x48"}).size == (32, 48)  # type: ignore[arg-type]


def test_a_preset_value_that_does_not_fit_names_the_preset(tmp_path: Path) -> None:
    preset = tmp_path / "long.toml"
    preset.write_text('description = "x"\n[learn]\nframes = 8\n')
    with pytest.raises(UserError) as caught:
        learn_plan({}, preset=str(preset))
    assert str(caught.value).startswith("The frame count 8 of preset 'long' does not fit base 'tiny'")


def test_the_learn_plan_is_complete_with_the_base_filling_what_nobody_chose() -> None:
    plan = learn_plan({"frames": 9})
    assert (plan.frames, plan.size) == (9, (64, 64))  # the flag, then the base's default size (square)
    assert plan.train.frames == 9 and plan.preview.seed == plan.train.seed
    quick = learn_plan({}, preset="quick")
    assert (quick.frames, quick.train.rank, quick.animate_defaults) == (9, 4, {"steps": 8})


def test_animate_takes_flag_then_table_then_the_action_as_learned_then_the_base() -> None:
    learned = SimpleNamespace(name="weld", frames=9, frame_size=(32, 32), fps=12.0)

    def plan(flags: dict, stored: dict, action: object | None = learned):
        name, config = resolve_animate(None, flags, stored=stored)
        return plan_animate(name, config, TINY, action, None, flags)  # type: ignore[arg-type]

    assert (plan({}, {}).frames, plan({}, {}).size, plan({}, {}).fps) == (9, (32, 32), 12.0)
    assert plan({}, {"frames": 13}).frames == 13
    assert plan({"frames": 5}, {"frames": 13}).frames == 5
    assert (plan({}, {}, None).frames, plan({}, {}, None).fps) == (17, 8.0)
    with pytest.raises(UserError, match="The frame count 8 of action 'weld' does not fit base 'tiny'"):
        plan({}, {}, SimpleNamespace(name="weld", frames=8, frame_size=(32, 32), fps=12.0))
    filled = plan({"steps": 3}, {})
    assert filled.sample.steps == 3 and filled.config.steps == 3 and filled.config.frames == 9


def test_the_embedded_base_is_read_as_the_planner_expects() -> None:
    shape = base_shape("tiny")
    assert shape is not None and shape.supplies(frames=True, size=True, fps=True)
    assert (shape.frame_step, shape.default_frames, shape.default_size) == (4, 17, 64)


WAN22 = BaseShape(
    "Wan2.2-TI2V-5B-Diffusers", 4, 32, 121, (1280, 704), 24.0, retime_fps=24.0, checkpointing=True
)


def test_gradient_checkpointing_is_on_for_real_bases_unless_turned_off() -> None:
    def plan(shape: BaseShape, flags: dict, preset: str = "quick"):
        name, config, table = resolve_learn(preset, flags)
        return plan_learn(name, config, table, shape, flags)

    assert plan(WAN22, {}).train.gradient_checkpointing is True
    assert plan(WAN22, {"gradient_checkpointing": False}).train.gradient_checkpointing is False
    assert plan(TINY, {}).train.gradient_checkpointing is False  # small bases: speed over memory
    assert plan(TINY, {"gradient_checkpointing": True}).train.gradient_checkpointing is True
    assert (plan(WAN22, {}).retime_fps, plan(TINY, {}).retime_fps) == (24.0, None)


def test_the_low_vram_preset_checkpoints_at_a_smaller_shape() -> None:
    name, config, table = resolve_learn("low-vram", {})
    plan = plan_learn(name, config, table, WAN22, {})
    assert (plan.frames, plan.size, plan.train.augment_copies) == (49, (832, 480), 2)
    assert plan.train.gradient_checkpointing is True and table == {"frames": 49}
