"""The docs read as a product: every relative link in the markdown resolves to a file inside the
repository, nothing points at notes outside it, the model card that ships in the wheel stays short,
and the markdown outside the lab journal (`docs/lab/`) stays within its budget."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_CARD = ROOT / "src" / "flashcli" / "weights" / "README.md"
LAB = ROOT / "docs" / "lab"
# Issue 24: markdown outside docs/lab at most 60,000 characters, counted as `wc -c` counts (bytes).
MARKDOWN_BUDGET_BYTES = 60_000
MODEL_CARD_LIMIT_CHARS = 10_000
# Build outputs and run folders that git ignores; hidden folders (.venv, .git, caches) are skipped too.
IGNORED_TOP = {"runs", "build", "dist"}

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def markdown_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*.md"):
        parts = path.relative_to(ROOT).parts
        if any(part.startswith(".") for part in parts) or parts[0] in IGNORED_TOP:
            continue
        if parts[:2] == ("bench", "out"):
            continue
        found.append(path)
    return sorted(found)


def link_targets(text: str) -> list[str]:
    """Link and image targets outside code, where `[a](b)` is prose rather than a link."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in link_targets(path.read_text()):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    return broken


def test_link_parser_sees_links_and_skips_code() -> None:
    text = '[a](x.md) ![b](img/p.png "t") [c](https://e.org) `[d](no.md)`\n```\n[e](no2.md)\n```\n[f]: y.md\n'
    assert link_targets(text) == ["x.md", "img/p.png", "https://e.org", "y.md"]


def test_every_relative_link_resolves_inside_the_repository() -> None:
    files = markdown_files()
    assert ROOT / "README.md" in files and MODEL_CARD in files
    broken = {str(path.relative_to(ROOT)): links for path in files if (links := broken_links(path))}
    assert not broken, f"links that do not resolve to a file in the repository: {broken}"


def test_no_document_points_at_notes_outside_the_repository() -> None:
    outside = [str(path.relative_to(ROOT)) for path in markdown_files() if "../shared/" in path.read_text()]
    assert not outside, f"these documents refer to ../shared/, which is not in the repository: {outside}"


def test_the_model_card_that_ships_in_the_wheel_is_short() -> None:
    length = len(MODEL_CARD.read_text())
    assert length < MODEL_CARD_LIMIT_CHARS, (
        f"the model card has {length} characters; move history to docs/lab"
    )


def test_markdown_outside_the_lab_journal_stays_within_budget() -> None:
    sizes = {
        str(path.relative_to(ROOT)): path.stat().st_size
        for path in markdown_files()
        if not path.is_relative_to(LAB)
    }
    total = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:4]
    assert total <= MARKDOWN_BUDGET_BYTES, (
        f"{total} bytes of markdown outside docs/lab (budget {MARKDOWN_BUDGET_BYTES}); largest: {largest}"
    )
