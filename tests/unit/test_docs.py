"""README.md and docs/*.md: every relative link points to a file that exists, every #anchor to a heading
of its target (GitHub's slug rule), and the README stays short enough to read."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
README_MAX_BYTES = 11_264  # 11 KiB: the quick start, what runs, the figures that matter, the commands; the rest in docs/

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


def prose(text: str) -> str:
    """The text outside fenced code blocks (fence lines blanked, so line numbers stay)."""
    out, fenced = [], None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if m and (fenced is None or m.group(1) == fenced):
            fenced = None if fenced else m.group(1)
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation but - and _ dropped,
    spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, repeated headings numbered as GitHub does (-1, -2)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")).split("\n"):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    body = prose(text)
    # Blank code spans but keep their newlines, so the line numbers stay right.
    body = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), body)
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEF):
        for m in pattern.finditer(body):
            found.append((m.start(1), body.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return [(line, target) for _, line, target in sorted(found)]


def check(files: list[Path], root: Path) -> list[str]:
    """One line per broken link: `file:line: target: why`. Links with a scheme (https:, mailto:) are not checked."""
    problems = []
    root = root.resolve()
    for doc in files:
        for line, target in links(doc.read_text(encoding="utf-8")):
            if SCHEME.match(target):
                continue
            where = f"{doc.relative_to(root)}:{line}: {target}"
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / unquote(path_part)).resolve() if path_part else doc.resolve()
            if not dest.is_relative_to(root):
                problems.append(f"{where}: points outside the repository")
            elif not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                if dest.suffix.lower() != ".md":
                    problems.append(f"{where}: an anchor into a file that is not markdown")
                elif unquote(anchor) not in anchors(dest):
                    problems.append(f"{where}: no heading with the anchor #{anchor} in {dest.relative_to(root)}")
    return problems


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_link_of_readme_and_docs_resolves():
    assert check(doc_files(), REPO) == []


def test_readme_is_short():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move the detail into docs/"


def test_readme_links_every_docs_file():
    linked = {(REPO / unquote(t.partition("#")[0])).resolve()
              for _, t in links((REPO / "README.md").read_text(encoding="utf-8")) if not SCHEME.match(t)}
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == []


def test_each_docs_file_opens_with_a_title_and_its_purpose():
    for p in sorted((REPO / "docs").glob("*.md")):
        lines = p.read_text(encoding="utf-8").split("\n")
        assert lines[0].startswith("# "), p.name
        assert lines[1] == "" and lines[2].strip() and not lines[2].startswith("#"), p.name


@pytest.mark.parametrize("heading, anchor", [
    ("Quick start", "quick-start"),
    ("DAG content: the author's workflow", "dag-content-the-authors-workflow"),
    ("Resource limits: memory and disk", "resource-limits-memory-and-disk"),
    ("Source tree: where each package runs, as whom", "source-tree-where-each-package-runs-as-whom"),
    ("`manage upgrade` and snake_case", "manage-upgrade-and-snake_case"),
    ("A [linked](other.md) heading", "a-linked-heading"),
])
def test_slug_follows_github(heading, anchor):
    assert slug(heading) == anchor


def test_checker_reports_planted_broken_links(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Real section\n\n## Twice\n\n## Twice\n")
    (tmp_path / "image.png").write_bytes(b"")
    (tmp_path / "README.md").write_text(
        "# Title\n"
        "\n"
        "## Here: a section\n"
        "[ok](docs/other.md) [ok](docs/other.md#real-section) [ok](#here-a-section) ![ok](image.png)\n"
        "[ok](docs/other.md#twice-1) [ok](https://example.com/nowhere.md) [ok](mailto:a@b.c)\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/other.md#no-such-section) [bad here](#nowhere)\n"
        "![gone](img/missing.png) [`code` in the text](docs/gone.md#x)\n"
        "[out](../../etc/passwd) [anchor into a picture](image.png#top) [twice](docs/other.md#twice-2)\n"
        "\n"
        "[ref]: docs/nothing.md\n"
        "\n"
        "```\n"
        "[in a fence](not/checked.md)\n"
        "```\n"
        "and `[in a code span](not/checked.md)` neither.\n"
    )
    problems = check([tmp_path / "README.md"], tmp_path)
    assert problems == [
        "README.md:6: docs/missing.md: no such file",
        "README.md:7: docs/other.md#no-such-section: no heading with the anchor #no-such-section in docs/other.md",
        "README.md:7: #nowhere: no heading with the anchor #nowhere in README.md",
        "README.md:8: img/missing.png: no such file",
        "README.md:8: docs/gone.md#x: no such file",
        "README.md:9: ../../etc/passwd: points outside the repository",
        "README.md:9: image.png#top: an anchor into a file that is not markdown",
        "README.md:9: docs/other.md#twice-2: no heading with the anchor #twice-2 in docs/other.md",
        "README.md:11: docs/nothing.md: no such file",
    ]


def test_checker_passes_the_same_document_once_fixed(tmp_path: Path):
    (tmp_path / "a.md").write_text("# A\n\nSee [b](b.md#b-section) and [here](#a).\n")
    assert check([tmp_path / "a.md"], tmp_path) == ["a.md:3: b.md#b-section: no such file"]
    (tmp_path / "b.md").write_text("# B\n\n## B section\n")
    assert check([tmp_path / "a.md"], tmp_path) == []
