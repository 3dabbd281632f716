"""The README stays true to the command line: every command and option is documented, and the two
install commands that .ci/run and users rely on are where they are expected."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import typer.main

from flashcli.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def fenced_command(marker: str) -> str:
    after = README.split(f"<!-- {marker} -->", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", after, re.S).group(1).strip()


def test_every_command_and_option_is_documented() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert f"flash {name}" in README, f"README lacks `flash {name}`"
        for parameter in command.params:
            if parameter.param_type_name == "option" and "--help" not in parameter.opts:
                documented = [flag for flag in parameter.opts if flag in README]
                assert documented, f"README lacks {parameter.opts} of `flash {name}`"


def test_global_options_version_and_short_help_are_documented() -> None:
    group = typer.main.get_command(app)
    for parameter in group.params:
        assert any(flag in README for flag in parameter.opts), f"README lacks {parameter.opts} of `flash`"
    assert "`-h`" in README and "flash --version" in README and "flash --library DIR inspect" in README


def test_the_demo_learns_into_its_own_library_in_the_checkout() -> None:
    # It used to learn `weld` into the user's default library with --force, replacing their own weld.
    demo = fenced_command("demo-command")
    learn = demo[demo.index("flash learn") :].split("&&")[0]
    animate = demo[demo.index("flash animate") :].split("&&")[0]
    libraries = [re.search(r"--library (\S+)", command) for command in (learn, animate)]
    assert all(libraries), "the demo must name its own --library for learn and animate"
    folder = libraries[0].group(1)
    assert libraries[1].group(1) == folder
    assert not folder.startswith(("/", "~", "$")) and ".." not in folder  # a folder inside the checkout


def test_install_commands_pin_cpu_torch_first_and_ci_runs_the_test_command() -> None:
    demo, tests = fenced_command("demo-command"), fenced_command("test-command")
    for command in (demo, tests):
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")
    assert "flash learn examples/clips/" in demo and "flash animate examples/photo.png" in demo
    assert tests.endswith("pytest")
    ci_script = (ROOT / ".ci" / "run").read_text()
    extraction = re.search(r"^command=\$\((.*)\)$", ci_script, re.M).group(1)
    extracted = subprocess.run(
        ["bash", "-c", extraction], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert extracted.stdout.strip() == tests
