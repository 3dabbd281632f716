"""A fuzz over what users (and attackers) hand the CLI: action names, paths, numbers, preset TOML and
`.flash` archives. Whatever the input, a command ends with exit 0 or 2, never 1 ("this is a bug"),
never prints a traceback, and a command that fails leaves the library exactly as it was.

Every command here fails or finishes before a model is loaded (a missing clip folder, a base folder
that does not exist, and loading refused outright), so the examples run in-process through typer's
runner, a few milliseconds each.
Derandomized, so CI sees the same examples every run; the whole file takes about a minute.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import Workspace, snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from flashcli.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")]

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# Text an argv can carry: anything but NUL (on POSIX undecodable bytes arrive as lone surrogates).
ARGV_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
TRICKY_NAMES = [
    "",
    ".",
    "..",
    "a.",
    "slide",
    "SLIDE",
    "w\n",
    "evil\n",
    "a" * 64,
    "a" * 65,
    "a/b",
    "../slide",
    " slide",
    "[bold]x[/bold]",
    "[/x]",
    ":smile:",
    "caf\udce9",  # a non-UTF-8 byte, as Python hands it over from argv
    "ｓｌｉｄｅ",
    "-a",
    "--help",
]
names = st.one_of(st.sampled_from(TRICKY_NAMES), st.text(ARGV_TEXT, max_size=70))
ACTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # what the README promises an action is called


@pytest.fixture(scope="module", autouse=True)
def command_built_once() -> Iterator[None]:
    """typer's runner rebuilds the click command from the function signatures on every invoke (about
    0.1 s, most of an example's time); the fuzz builds it once and reuses it."""
    import typer.main
    import typer.testing

    command = typer.main.get_command(app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", lambda _: command)
        yield


@pytest.fixture(scope="module", autouse=True)
def no_model_loading() -> Iterator[None]:
    """A fuzzed input that reached a model (a path that happened to hold a video) would train for
    minutes; loading stops it with exit 2 instead, so the fuzz stays within its minute."""
    import flashcli.core.specs as specs
    from flashcli.errors import UserError

    def refuse(*args: object, **kwargs: object) -> None:
        raise UserError("the fuzz does not load models.")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(specs, "load_base", refuse)
        yield


@dataclass(frozen=True)
class Sandbox:
    root: Path  # a fresh folder per example
    library: Path  # a copy of the workspace library, holding 'slide'
    export: Path  # a good export of 'slide'
    photo: Path


@pytest.fixture(scope="module")
def good_export(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fuzz-export") / "slide.flash"
    result = CliRunner().invoke(app, ["export", "slide", str(target), "--library", str(workspace.library)])
    assert result.exit_code == 0, result.output
    return target


@contextmanager
def sandbox(workspace: Workspace, export: Path) -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="flash-fuzz-"))
    try:
        library = root / "library"
        shutil.copytree(workspace.library, library)
        (root / "file.txt").write_text("not a folder")
        (root / "dir").mkdir()
        yield Sandbox(root=root, library=library, export=export, photo=workspace.photo)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: list[str], library: Path) -> Result:
    """Run `flash ARGS`, check the contract, return the result."""
    before = snapshot(library)
    result = CliRunner().invoke(app, args)
    shown = f"flash {args!r} -> exit {result.exit_code}\n{result.stderr}"
    assert result.exit_code in (0, 2), shown
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, shown
    if result.exit_code == 2:
        assert snapshot(library) == before, f"the library changed although {shown}"
        assert result.stderr.strip(), shown
    actions = [entry.name for entry in library.iterdir() if not entry.name.startswith(".")]
    assert all(ACTION_NAME.fullmatch(name) for name in actions), f"{actions} after {shown}"
    return result


def learn_args(sandbox: Sandbox, *extra: str) -> list[str]:
    """A learn that stops before any model loads: its clip folder does not exist."""
    return ["learn", str(sandbox.root / "no-clips"), "--library", str(sandbox.library), *extra]


def animate_args(sandbox: Sandbox, *extra: str) -> list[str]:
    """An animate that stops before any model loads: its --base folder does not exist."""
    base = ["--base", str(sandbox.root / "no-base"), "--out-dir", str(sandbox.root / "out")]
    return ["animate", str(sandbox.photo), "--library", str(sandbox.library), *base, *extra]


# -- names --------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(
    name=names,
    command=st.sampled_from(["learn", "rename-to", "rename-from", "remove", "inspect", "export", "import"]),
)
# From the issue: a trailing newline slipped past the name check; rich markup in a name crashed the
# error message itself (exit 1).
@example(name="w\n", command="rename-to")
@example(name="evil\n", command="import")
@example(name="[/x]", command="learn")
def test_any_action_name(name: str, command: str, workspace: Workspace, good_export: Path) -> None:
    with sandbox(workspace, good_export) as box:
        library = ["--library", str(box.library)]
        args = {
            "learn": learn_args(box, "--action", name),
            "rename-to": ["rename", "slide", name, *library],
            "rename-from": ["rename", name, "renamed", *library],
            "remove": ["remove", name, *library],
            "inspect": ["inspect", name, *library],
            "export": ["export", name, str(box.root / "out.flash"), *library],
            "import": ["import", str(box.export), "--as", name, *library],
        }[command]
        result = run(args, box.library)
        if command == "learn":
            assert result.exit_code == 2


# -- paths --------------------------------------------------------------------------------------------

segment = st.text(ARGV_TEXT.filter(lambda c: c != "/"), min_size=1, max_size=30).filter(lambda s: s != "..")
relative = st.lists(segment, min_size=1, max_size=4).map("/".join)
paths = st.one_of(
    relative,
    relative.map(lambda p: f"file.txt/{p}"),  # a path under a file
    relative.map(lambda p: f"dir/{p}/"),
    st.sampled_from(["file.txt", "dir", "library", "library/slide", "library/slide/action.json", "x" * 300]),
)


@settings(FUZZ, max_examples=200)
@given(
    path=paths,
    command=st.sampled_from(
        ["library", "clips", "photo", "output", "out-dir", "export", "import", "preset", "plot"]
    ),
)
@example(path="file.txt/out.flash", command="export")  # a path under a file: exit 1 in the issue
@example(path="file.txt/library", command="library")
def test_any_path(path: str, command: str, workspace: Workspace, good_export: Path) -> None:
    with sandbox(workspace, good_export) as box:
        where = str(box.root / path)
        library = ["--library", str(box.library)]
        args = {
            "library": ["inspect", "--library", where, "--json"],
            "clips": ["learn", where, "--action", "fresh", *library, "--base", str(box.root / "no-base")],
            "photo": ["animate", where, "--action", "slide", *library, "--base", str(box.root / "no-base")],
            "output": animate_args(box, "--action", "slide", "-o", where)[:-2],  # -o, not --out-dir
            "out-dir": ["animate", str(box.photo), "--action", "slide", *library, "--out-dir", where],
            "export": ["export", "slide", where, *library],
            "import": ["import", where, *library],
            "preset": learn_args(box, "--action", "fresh", "--preset", where),
            "plot": ["inspect", "slide", *library, "--plot", where],
        }[command]
        if command == "out-dir":
            args += ["--base", str(box.root / "no-base")]
        run(args, box.library)


# -- numbers ------------------------------------------------------------------------------------------

integers = st.one_of(
    st.integers(-(2**40), 2**40),
    st.sampled_from([0, 1, 2, 3, 5, 8, 9, 15, 16, 17, 63, 64, 257, 258, 2048, 2049, -1, 2**63, -(2**63)]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_000", "", " 3", "three"]),
).map(str)
learn_flags = st.sampled_from(["--steps", "--rank", "--frames", "--size", "--seed", "--ded-steps"])
animate_flags = st.sampled_from(["--steps", "--frames", "--size", "--seed"])


@settings(FUZZ, max_examples=200)
@given(
    values=st.lists(
        st.one_of(
            st.tuples(st.just("learn"), learn_flags, integers.map(str)),
            st.tuples(st.just("animate"), animate_flags, integers.map(str)),
            st.tuples(st.just("animate"), st.just("--fps"), floats),
            st.tuples(st.just("strength"), st.just("--action"), floats),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_number(values: list[tuple[str, str, str]], workspace: Workspace, good_export: Path) -> None:
    command = values[0][0]
    with sandbox(workspace, good_export) as box:
        flags = [
            part for kind, flag, value in values if kind in (command, "strength") for part in (flag, value)
        ]
        if command == "learn":
            args = learn_args(box, "--action", "fresh", "--base", "tiny", *flags)
        else:
            strengths = [f"slide:{value}" for kind, _, value in values if kind == "strength"]
            plain = [part for kind, flag, value in values if kind == "animate" for part in (flag, value)]
            actions = [part for strength in strengths or ["slide"] for part in ("--action", strength)]
            args = animate_args(box, *actions, *plain)
        assert run(args, box.library).exit_code == 2  # nothing here can succeed without clips or a base


# -- preset TOML ----------------------------------------------------------------------------------------

toml_keys = st.sampled_from(
    ["steps", "rank", "frames", "size", "seed", "crop", "device", "learning_rate", "preview_steps", "base",
     "checkpoint_every", "ded_steps", "format", "fps", "eta", "guidance", "warmup_steps", "targets",
     "precision", "motion_align", "strong_augment", "prompt", "stepz"]
)  # fmt: skip
toml_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf").lower()),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(ARGV_TEXT, max_size=20).map(json.dumps),
    st.sampled_from(
        ['["attn1.to_q"]', "[]", "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", '"center"', '"tiny"']
    ),
)
tables = st.sampled_from(
    ["", "[learn]", "[learn.core]", "[learn.align]", "[animate]", "[animate.core]", "[other]"]
)
toml_lines = st.lists(
    st.one_of(tables, st.tuples(toml_keys, toml_values).map(lambda kv: f"{kv[0]} = {kv[1]}")), max_size=8
)
presets = st.one_of(
    toml_lines.map(lambda lines: 'description = "fuzz"\n' + "\n".join(lines) + "\n"),
    toml_lines.map(lambda lines: "\n".join(lines) + "\n"),
    st.text(ARGV_TEXT, max_size=200),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
)


@settings(FUZZ, max_examples=200)
@given(text=presets, command=st.sampled_from(["learn", "animate"]))
@example(text='description = "x"\n[learn]\nframes = 8\n', command="learn")
@example(text='description = "x"\n[animate]\nformat = "mov"\n', command="animate")
def test_any_preset_file(text: str, command: str, workspace: Workspace, good_export: Path) -> None:
    with sandbox(workspace, good_export) as box:
        preset = box.root / "mine.toml"
        preset.write_bytes(text.encode("utf-8", "surrogateescape"))
        if command == "learn":
            args = learn_args(box, "--action", "fresh", "--base", "tiny", "--preset", str(preset))
        else:
            args = animate_args(box, "--action", "slide", "--preset", str(preset))
        assert run(args, box.library).exit_code == 2


# -- .flash archives ------------------------------------------------------------------------------------

MEMBERS = ("action.json", "adapter.safetensors", "preview.gif", "ded.safetensors")
member_names = st.one_of(st.sampled_from(["../x", "/abs", "a/b", "dir/", "action.json/", *MEMBERS]), segment)
json_values = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(ARGV_TEXT, max_size=40),
    st.sampled_from(["evil\n", "../x", "slide", "a" * 100, [], {}, [1], {"file": "../../x"}]),
)
manifest_keys = st.sampled_from(
    ["name", "format_version", "base", "base_hash", "frames", "size", "fps", "steps", "rank",
     "adapter_sha256", "ded", "clips", "preview_source", "animate_defaults", "losses", "settings", "created",
     "extra"]
)  # fmt: skip
# A recipe of edits to a good export, so that a failing archive can be pinned with @example.
edits = st.lists(
    st.one_of(
        st.tuples(st.just("drop"), st.integers(0, 9)),
        st.tuples(st.just("rename"), st.integers(0, 9), member_names),
        st.tuples(st.just("add"), member_names, st.binary(max_size=300)),
        st.tuples(st.just("flip"), st.integers(0, 9), st.integers(0, 2**20), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 9), st.floats(0, 1)),
        st.tuples(st.just("duplicate"), st.integers(0, 9)),
        st.tuples(st.just("set"), manifest_keys, json_values),
        st.tuples(st.just("delete"), manifest_keys),
    ),
    max_size=4,
)


def edited_manifest(data: bytes, edit: tuple) -> bytes:
    try:
        document = json.loads(data)
    except ValueError:  # an earlier edit broke it: start from nothing
        document = {}
    document = document if isinstance(document, dict) else {}
    if edit[0] == "set":
        document[edit[1]] = edit[2]
    else:
        document.pop(edit[1], None)
    return json.dumps(document).encode()


def build_archive(good: Path, recipe: list[tuple], compression: int) -> bytes:
    """The good export's members with the recipe's edits applied, zipped again."""
    with zipfile.ZipFile(good) as archive:
        entries = [(name, archive.read(name)) for name in archive.namelist()]
    for edit in recipe:
        kind, at = edit[0], (edit[1] % len(entries) if entries and isinstance(edit[1], int) else 0)
        if kind == "add":
            entries.append((edit[1], edit[2]))
        elif kind in ("set", "delete"):
            manifests = [i for i, (name, _) in enumerate(entries) if name == "action.json"]
            for i in manifests[:1]:
                entries[i] = ("action.json", edited_manifest(entries[i][1], edit))
        elif not entries:
            continue
        elif kind == "drop":
            entries.pop(at)
        elif kind == "rename":
            entries[at] = (edit[2], entries[at][1])
        elif kind == "flip" and entries[at][1]:
            name, data = entries[at]
            where = edit[2] % len(data)
            entries[at] = (name, data[:where] + bytes([data[where] ^ edit[3]]) + data[where + 1 :])
        elif kind == "truncate":
            name, data = entries[at]
            entries[at] = (name, data[: int(len(data) * edit[2])])
        elif kind == "duplicate":
            entries.append(entries[at])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


@settings(FUZZ, max_examples=300)
@given(
    recipe=st.one_of(edits, st.binary(max_size=500)),
    compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    as_name=st.one_of(st.none(), names),
)
# The cases: a manifest naming "evil\n" (the name check ended in `$`), a tampered adapter, a
# preview the manifest does not vouch for.
@example(recipe=[("set", "name", "evil\n")], compression=zipfile.ZIP_DEFLATED, as_name=None)
@example(recipe=[("flip", 1, 5000, 1)], compression=zipfile.ZIP_STORED, as_name="tampered")
@example(recipe=[("drop", 2), ("add", "preview.gif", b"GIF89a" + bytes(64))], compression=0, as_name=None)
def test_any_flash_archive(
    recipe: list[tuple] | bytes,
    compression: int,
    as_name: str | None,
    workspace: Workspace,
    good_export: Path,
) -> None:
    raw = recipe if isinstance(recipe, bytes) else build_archive(good_export, recipe, compression)
    with sandbox(workspace, good_export) as box:
        source = box.root / "in.flash"
        source.write_bytes(raw)
        args = ["import", str(source), "--library", str(box.library), "--json"]
        before = set(snapshot(box.library))
        result = run([*args, *(["--as", as_name] if as_name is not None else [])], box.library)
        if result.exit_code == 0:  # it took the action in whole: a manifest, an adapter, a valid name
            imported = json.loads(result.stdout)["imported"]
            added = {Path(name).parts[0] for name in set(snapshot(box.library)) - before}
            assert added <= {imported} and (box.library / imported / "action.json").is_file()
