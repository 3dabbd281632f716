"""The library as a store of untrusted input (issue 26): hostile `.flash` files, damaged actions,
odd names and an unwritable library. Every refusal exits 2 with one sentence naming the file and the
fix, and leaves the library exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import Workspace, run_cli, snapshot
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from flashcli.cli import app
from flashcli.library import Library

# Fields a newer flash adds to the manifest; without them a manifest is what the first flash wrote.
NEW_FIELDS = ("adapter_size", "preview_sha256", "preview_size")


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(app, list(args))


def refused(result, *needles: str) -> None:
    """Exit 2 ending in one sentence on stderr that holds every needle; no traceback, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in message, result.stderr


def visible(library: Path) -> list[str]:
    return sorted(entry.name for entry in library.iterdir() if not entry.name.startswith("."))


def staged_leftovers(library: Path) -> list[str]:
    return [entry.name for entry in library.iterdir() if entry.name.startswith((".staging", ".trash"))]


# -- `.flash` files built by hand ------------------------------------------------------------------


def old_export_members(workspace: Workspace, scratch: Path) -> dict[str, bytes]:
    """The members of an export of 'slide' as the first flash wrote them (no sizes, no preview hash)."""
    exported = Library(workspace.library).export("slide", scratch / "slide.flash")
    with zipfile.ZipFile(exported) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["action.json"])
    for field in NEW_FIELDS:
        manifest.pop(field, None)
    members["action.json"] = json.dumps(manifest).encode()
    return members


def deflated(data: bytes) -> tuple[bytes, int, int]:
    """(raw deflate stream, crc32, size) of `data`, as a zip member stores it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush(), zlib.crc32(data), len(data)


def zeros_bomb(mebibytes: int) -> tuple[bytes, int, int]:
    """A deflate stream of `mebibytes` MiB of zeros built from one repeated block: about 1 KB per MiB,
    so a 2 GiB member costs 2 MB of file and no time to make."""
    zeros = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)  # a full flush resets the history
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    return block * mebibytes + packer.flush(), crc, mebibytes << 20


def write_zip(path: Path, members: list[tuple[str, tuple[bytes, int, int]]]) -> Path:
    """A zip of deflated members whose headers say exactly what is given (zipfile cannot write a
    pre-compressed stream or a header that lies about the size)."""
    body, central = bytearray(), bytearray()
    for name, (data, crc, size) in members:
        encoded, offset = name.encode(), len(body)
        body += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0
        )
        body += encoded + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded),
            0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path


def measured_cli(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`flash ARGS` as a process of its own, with its peak memory in bytes (max RSS, read by a parent
    that has no other children, so earlier tests' processes do not count)."""
    parent = (
        "import resource, subprocess, sys\n"
        "flash = [sys.executable, '-c', 'from flashcli.cli import main; main()', *sys.argv[1:]]\n"
        "done = subprocess.run(flash, capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout)\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.stderr.write(f'\\nmaxrss {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}')\n"
        "sys.exit(done.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", parent, *args], capture_output=True, text=True, timeout=600
    )
    rest, _, peak = result.stderr.rpartition("\nmaxrss ")
    result.stderr = rest
    return result, int(peak) * (1 if sys.platform == "darwin" else 1024)  # Linux reports KiB


@pytest.mark.parametrize("member", ["preview.gif", "adapter.safetensors"])
def test_a_zip_bomb_is_refused_in_bounded_memory(
    member: str, workspace: Workspace, library_copy: Path, tmp_path: Path
) -> None:
    members = old_export_members(workspace, tmp_path)
    packed = [(name, deflated(data)) for name, data in members.items() if name != member]
    bomb = write_zip(tmp_path / "bomb.flash", [*packed, (member, zeros_bomb(2048))])  # 2 GiB inside
    assert bomb.stat().st_size < 3_000_000
    before = snapshot(library_copy)

    result, peak = measured_cli("import", str(bomb), "--as", "boom", "--library", str(library_copy))

    assert result.returncode == 2, result.stderr
    assert "refused" in result.stderr and str(bomb) in result.stderr and "Traceback" not in result.stderr
    assert peak < 200 * 2**20, f"peak memory {peak / 2**20:.0f} MiB"
    assert snapshot(library_copy) == before and staged_leftovers(library_copy) == []


def test_a_member_that_unpacks_to_more_than_its_header_says_is_refused(
    workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    members = old_export_members(workspace, tmp_path)
    stream, crc, _ = zeros_bomb(64)
    lying = (stream, crc, len(members["preview.gif"]))  # the header claims the real preview's size
    packed = [(name, deflated(data)) for name, data in members.items() if name != "preview.gif"]
    bomb = write_zip(tmp_path / "lying.flash", [*packed, ("preview.gif", lying)])
    before = snapshot(library_copy)
    refused(invoke(runner, "import", str(bomb), "--as", "boom", "--library", str(library_copy)), str(bomb))
    assert snapshot(library_copy) == before and staged_leftovers(library_copy) == []


def test_a_preview_other_than_the_exported_one_is_refused(
    workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    exported = Library(library_copy).export("slide", tmp_path / "slide.flash")
    with zipfile.ZipFile(exported) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["action.json"])
    assert manifest["preview_sha256"] == hashlib.sha256(members["preview.gif"]).hexdigest()
    assert manifest["preview_size"] == len(members["preview.gif"])
    for name, preview in (("same-size", bytes(len(members["preview.gif"]))), ("bigger", b"GIF89a" * 9000)):
        swapped = tmp_path / f"{name}.flash"
        with zipfile.ZipFile(swapped, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, preview if member == "preview.gif" else data)
        before = snapshot(library_copy)
        result = invoke(runner, "import", str(swapped), "--as", "copy", "--library", str(library_copy))
        refused(result, "preview.gif", "does not match its manifest", str(swapped))
        assert snapshot(library_copy) == before and staged_leftovers(library_copy) == []
    # The untouched export imports, and an older export (no sizes, no preview hash) still does too,
    # its preview now recorded.
    library = ["--library", str(library_copy)]
    assert invoke(runner, "import", str(exported), "--as", "copy", *library).exit_code == 0
    old = write_zip(
        tmp_path / "old.flash",
        [(name, deflated(data)) for name, data in old_export_members(workspace, tmp_path).items()],
    )
    assert invoke(runner, "import", str(old), "--as", "old", *library).exit_code == 0
    for name in ("copy", "old"):
        assert Library(library_copy).verified(name).preview_sha256 == manifest["preview_sha256"]


def test_a_member_given_twice_is_refused(
    workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    members = old_export_members(workspace, tmp_path)
    twice = tmp_path / "twice.flash"
    packed = [(name, deflated(data)) for name, data in members.items()]
    write_zip(twice, [("adapter.safetensors", deflated(b"something else")), *packed])
    before = snapshot(library_copy)
    refused(invoke(runner, "import", str(twice), "--as", "copy", "--library", str(library_copy)), "once")
    assert snapshot(library_copy) == before


def test_a_manifest_name_ending_in_a_newline_is_refused(
    workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    members = old_export_members(workspace, tmp_path)
    manifest = json.loads(members["action.json"])
    members["action.json"] = json.dumps({**manifest, "name": "evil\n"}).encode()
    evil = write_zip(tmp_path / "evil.flash", [(name, deflated(data)) for name, data in members.items()])
    before = snapshot(library_copy)
    refused(invoke(runner, "import", str(evil), "--library", str(library_copy)), "--as NAME", "evil\\n")
    assert snapshot(library_copy) == before and visible(library_copy) == ["slide"]
    assert invoke(runner, "import", str(evil), "--as", "good", "--library", str(library_copy)).exit_code == 0


def test_rename_to_a_name_with_a_trailing_newline_is_refused(library_copy: Path, runner: CliRunner) -> None:
    before = snapshot(library_copy)
    refused(
        invoke(runner, "rename", "slide", "w\n", "--library", str(library_copy)), "not a valid action name"
    )
    assert snapshot(library_copy) == before and visible(library_copy) == ["slide"]


# -- damaged actions -------------------------------------------------------------------------------


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last weight, past the header
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def nan_weights(path: Path) -> None:
    """NaN in one weight, the manifest's hash updated to match: only the weights give it away."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    first = sorted(tensors)[0]
    tensors[first].flat[0] = np.nan
    save_file(tensors, str(path), metadata=metadata)
    manifest_path = path.with_name("action.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["adapter_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


DAMAGE = {"tampered": flip_a_byte, "truncated": truncate, "nan": nan_weights}
COMMANDS = {
    "animate": lambda ws, out: ["animate", str(ws.photo), "--action", "slide", "-o", str(out / "o.mp4")],
    "inspect": lambda ws, out: ["inspect", "slide"],
    "export": lambda ws, out: ["export", "slide", str(out / "slide.flash")],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_adapter_is_refused_on_every_load(
    damage: str, command: str, workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    adapter = library_copy / "slide" / "adapter.safetensors"
    DAMAGE[damage](adapter)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(library_copy)
    result = invoke(runner, *COMMANDS[command](workspace, out), "--library", str(library_copy))
    refused(result, str(adapter), "flash remove slide")
    assert list(out.iterdir()) == [] and snapshot(library_copy) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_tampered_ded_is_refused_on_every_load(
    command: str, workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    folder = library_copy / "slide"
    ded = folder / "ded.safetensors"
    save_file({"conv.weight": np.ones((2, 2), dtype=np.float32)}, str(ded))
    manifest = json.loads((folder / "action.json").read_text())
    manifest["ded"] = {
        "sha256": hashlib.sha256(ded.read_bytes()).hexdigest(),
        "steps": 1,
        "learning_rate": 1e-4,
        "seconds": 1.0,
        "final_losses": {"loss": 0.1},
    }
    (folder / "action.json").write_text(json.dumps(manifest))
    flip_a_byte(ded)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(runner, *COMMANDS[command](workspace, out), "--library", str(library_copy))
    refused(result, str(ded), "flash remove slide")
    assert list(out.iterdir()) == []


def test_broken_actions_are_listed_as_broken_and_the_others_still_list(
    library_copy: Path, runner: CliRunner
) -> None:
    import shutil

    for name in ("corrupt", "missing", "tampered"):
        shutil.copytree(library_copy / "slide", library_copy / name)
    (library_copy / "corrupt" / "action.json").write_text("{ not json")
    (library_copy / "missing" / "adapter.safetensors").unlink()
    flip_a_byte(library_copy / "tampered" / "adapter.safetensors")
    library = ["--library", str(library_copy)]

    listing = invoke(runner, "inspect", *library, "--json")
    assert listing.exit_code == 0, listing.output
    status = {row["action"]: row["status"] for row in json.loads(listing.stdout)["actions"]}
    assert status == {"corrupt": "broken", "missing": "broken", "slide": "ok", "tampered": "broken"}
    table = invoke(runner, "inspect", *library)
    assert table.exit_code == 0 and table.stdout == ""
    assert (
        "slide" in table.stderr
        and "tiny-test" in table.stderr
        and sum(line.startswith("broken: ") for line in table.stderr.splitlines()) == 3
    )

    verified = invoke(runner, "inspect", *library, "--verify", "--json")
    assert verified.exit_code == 2
    rows = json.loads(verified.stdout)["actions"]  # still exactly one JSON document on stdout
    problems = {row["action"]: row["problem"] for row in rows}
    assert problems["slide"] is None and "adapter.safetensors" in problems["missing"]
    assert "3 of 4 actions" in verified.stderr

    for name in ("corrupt", "missing", "tampered"):
        assert invoke(runner, "remove", name, *library).exit_code == 0
    assert invoke(runner, "inspect", *library, "--verify").exit_code == 0


def test_a_negative_frame_count_in_the_manifest_names_the_manifest(
    workspace: Workspace, library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    manifest_path = library_copy / "slide" / "action.json"
    manifest_path.write_text(manifest_path.read_text().replace('"frames": 5', '"frames": -7'))
    result = invoke(
        runner, "animate", str(workspace.photo), "--action", "slide", "--library", str(library_copy),
        "-o", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    refused(result, str(manifest_path), "'frames'")
    assert "--frames" not in result.stderr


def test_an_adapter_whose_rank_disagrees_with_its_header_gets_one_sentence(
    workspace: Workspace, tmp_path: Path, runner: CliRunner
) -> None:
    from safetensors import safe_open

    source = workspace.library / "slide" / "adapter.safetensors"
    with safe_open(str(source), framework="numpy") as handle:
        metadata = {**handle.metadata(), "rank": "4"}  # learned with rank 2
    loose = tmp_path / "wrong_rank.safetensors"
    save_file(load_file(str(source)), str(loose), metadata=metadata)
    result = invoke(
        runner, "animate", str(workspace.photo), "--action", str(loose), "--base", str(workspace.base),
        "--library", str(workspace.library), "-o", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    refused(result, str(loose), "rank 4")
    assert not (tmp_path / "o.mp4").exists()


def test_a_taken_name_points_to_the_option_each_command_has(
    library_copy: Path, tmp_path: Path, runner: CliRunner
) -> None:
    library = ["--library", str(library_copy)]
    exported = Library(library_copy).export("slide", tmp_path / "slide.flash")
    assert invoke(runner, "rename", "slide", "glide", *library).exit_code == 0
    assert invoke(runner, "import", str(exported), *library).exit_code == 0
    taken = invoke(runner, "import", str(exported), "--as", "glide", *library)
    refused(taken, "--as NAME", "--force")
    assert "--action" not in taken.stderr
    clash = invoke(runner, "rename", "slide", "glide", *library)
    refused(clash, "NEW", "--force")
    assert "--action" not in clash.stderr


# -- an unwritable library -------------------------------------------------------------------------


def read_only_commands(exported: Path) -> dict[str, list[str]]:
    return {
        "remove": ["remove", "slide"],
        "rename": ["rename", "slide", "glide"],
        "import": ["import", str(exported), "--as", "copy"],
    }


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_library_says_permission_denied(library_copy: Path, tmp_path: Path) -> None:
    exported = Library(library_copy).export("slide", tmp_path / "slide.flash")
    before = snapshot(library_copy)
    library_copy.chmod(0o555)
    try:
        for args in read_only_commands(exported).values():
            result = run_cli(*args, "--library", str(library_copy))
            assert result.returncode == 2, result.stderr
            assert "permission denied" in result.stderr and str(library_copy) in result.stderr
    finally:
        library_copy.chmod(0o755)
    assert snapshot(library_copy) == before


@pytest.mark.parametrize("command", ["remove", "rename", "import"])
def test_a_library_the_system_refuses_to_change_says_permission_denied(
    command: str, library_copy: Path, tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a read-only folder does to a user who is not root, simulated where the tests run as root:
    creating anything in the library root fails with EACCES."""
    import tempfile

    exported = Library(library_copy).export("slide", tmp_path / "slide.flash")
    real_mkdtemp = tempfile.mkdtemp

    def refusing_mkdtemp(*args: object, dir: str | os.PathLike | None = None, **kwargs: object) -> str:
        if dir is not None and Path(dir) == library_copy:
            raise PermissionError(13, "Permission denied", str(library_copy))
        return real_mkdtemp(*args, dir=dir, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkdtemp", refusing_mkdtemp)
    before = snapshot(library_copy)
    result = invoke(runner, *read_only_commands(exported)[command], "--library", str(library_copy))
    refused(result, "ermission denied", str(library_copy))
    assert snapshot(library_copy) == before


# -- names and output ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_clip_name_that_is_not_utf8_keeps_the_action_usable(
    workspace: Workspace, tmp_path: Path, runner: CliRunner
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for index, clip in enumerate(sorted(workspace.clips.iterdir())):
        target = os.path.join(os.fsencode(clips), b"clip%d\xff.mp4" % index)
        with open(target, "wb") as handle:
            handle.write(clip.read_bytes())
    library = ["--library", str(tmp_path / "library")]
    learned = run_cli(
        "learn", str(clips), "--action", "odd", "--base", str(workspace.base),
        "--preset", str(workspace.preset), "--device", "cpu", *library,
    )  # fmt: skip
    assert learned.returncode == 0, learned.stderr
    manifest = (tmp_path / "library" / "odd" / "action.json").read_bytes()
    assert "clip0\\xff.mp4" in json.loads(manifest.decode("utf-8"))["clips"][0]["path"]

    assert run_cli("inspect", "odd", *library).returncode == 0
    details = run_cli("inspect", "odd", "--json", *library)
    assert details.returncode == 0, details.stderr
    assert json.loads(details.stdout)["manifest"]["clips"][0]["path"].endswith("clip0\\xff.mp4")
    animated = run_cli(
        "animate", str(workspace.photo), "--action", "odd", "-o", str(tmp_path / "o.gif"), *library
    )
    assert animated.returncode == 0, animated.stderr
    assert run_cli("rename", "odd", "even", *library).returncode == 0
    exported = run_cli("export", "even", str(tmp_path / "even.flash"), *library)
    assert exported.returncode == 0, exported.stderr
    imported = run_cli("import", str(tmp_path / "even.flash"), "--as", "again", *library)
    assert imported.returncode == 0, imported.stderr


def test_inspect_prints_its_tables_on_stderr_in_binary_units_and_plain_words(
    workspace: Workspace, runner: CliRunner
) -> None:
    library = ["--library", str(workspace.library)]
    listing = invoke(runner, "inspect", *library)
    assert listing.exit_code == 0 and listing.stdout == ""
    assert "KiB" in listing.stderr and "kB" not in listing.stderr
    details = invoke(runner, "inspect", "slide", *library)
    assert details.exit_code == 0 and details.stdout == ""
    prompt_line = next(line for line in details.stderr.splitlines() if line.strip().startswith("prompt"))
    assert "None" not in prompt_line and "—" in prompt_line
    preview_line = next(line for line in details.stderr.splitlines() if line.strip().startswith("preview "))
    held_out = Library(workspace.library).manifest("slide").preview_source.split(":")[1]  # a clip's action
    assert "'slide'" in preview_line and held_out not in preview_line.replace("-", "_")
