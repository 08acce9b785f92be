"""Every relative link of README.md and docs/**/*.md leads somewhere inside the repository.

Users clone the repository and read it on GitHub: a link to a file outside it (`../shared/...`),
to a file that does not exist or to a heading that is not there is a dead end for them. Checked:
inline links and images `[text](target)`, reference definitions `[label]: target` and HTML
`href`/`src` attributes, outside code spans and fenced code blocks. `http(s):` and `mailto:`
links are not followed. A `#fragment` into a Markdown file must be the GitHub anchor of one of
its headings (or an explicit `<a id="...">`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML = re.compile(r"\b(?:href|src)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*\"([^\"]+)\"", re.IGNORECASE)
_IGNORED_SCHEMES = ("http://", "https://", "mailto:")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def doc_files(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            continue
        if fence is not None:
            if m and m.group(1).startswith(fence):
                fence = None
            continue
        yield number, line


def _without_code_spans(line: str) -> str:
    return _CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line)


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading's text: inline markup reduced to its text, lowercased,
    punctuation removed (letters of every script, digits, '_', '-' and spaces kept), each space
    a '-'."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (a repeated slug gets -1, -2, ...)
    and explicit `<a id="...">` / `<a name="...">`."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        found.update(_HTML_ANCHOR.findall(_without_code_spans(line)))
        m = _HEADING.match(line)
        if m is None:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _targets(line: str) -> Iterator[str]:
    for pattern in (_INLINE, _REFERENCE, _HTML):
        for m in pattern.finditer(line):
            yield m.group(1).removeprefix("<").removesuffix(">")


def broken_links(root: Path, files: Iterable[Path]) -> list[str]:
    """`file:line -> target: reason` for every relative link of `files` that does not resolve
    to a file or directory inside `root`, or whose fragment names no heading of its Markdown file."""
    root = root.resolve()
    problems: list[str] = []
    for doc in files:
        doc = doc.resolve()
        shown = doc.relative_to(root).as_posix()
        for number, line in _prose_lines(doc.read_text(encoding="utf-8")):
            for target in _targets(_without_code_spans(line)):
                reason = _problem(root, doc, target)
                if reason is not None:
                    problems.append(f"{shown}:{number} -> {target}: {reason}")
    return problems


def _problem(root: Path, doc: Path, target: str) -> str | None:
    if target.startswith(_IGNORED_SCHEMES):
        return None
    if _SCHEME.match(target):
        return "not a relative link (only http, https and mailto links may leave the repository)"
    path_part, _, fragment = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):  # GitHub reads it from the repository root
        resolved = (root / path_part.lstrip("/")).resolve()
    else:
        resolved = (doc.parent / path_part).resolve() if path_part else doc
    if not resolved.is_relative_to(root):
        return "points outside the repository"
    if not resolved.exists():
        return f"no such file {resolved.relative_to(root).as_posix()}"
    if fragment and resolved.is_file() and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
        return f"no heading with anchor #{fragment} in {resolved.relative_to(root).as_posix()}"
    return None


# --- the repository's own documents --------------------------------------------------------------
def test_readme_and_docs_links_resolve_inside_the_repository() -> None:
    problems = broken_links(ROOT, doc_files(ROOT))
    assert not problems, "broken links in the docs:\n" + "\n".join(problems)


def test_readme_links_the_contract() -> None:
    assert "](docs/contract.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


# --- the checker itself ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("1. Devices and readings", "1-devices-and-readings"),
        (
            "Command line: `miaoxiang simulate` and `miaoxiang demo`",
            "command-line-miaoxiang-simulate-and-miaoxiang-demo",
        ),
        ("秒响应 (`response: immediate`)", "秒响应-response-immediate"),
        ("GB/T 26875.3 TCP", "gbt-268753-tcp"),
        ("Alarm object — v2 additions", "alarm-object--v2-additions"),
        ("See [the contract](contract.md) here", "see-the-contract-here"),
        ("snake_case_name", "snake_case_name"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def _repo(tmp_path: Path, readme: str, docs: dict[str, str]) -> Path:
    (tmp_path / "repo" / "docs").mkdir(parents=True)
    root = tmp_path / "repo"
    (root / "README.md").write_text(readme, encoding="utf-8")
    for name, text in docs.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    return root


def test_checker_accepts_good_links_and_skips_code_and_external_links(tmp_path: Path) -> None:
    root = _repo(
        tmp_path,
        (
            "# Title\n"
            "See [the contract](docs/contract.md), [its §1](docs/contract.md#1-devices-and-readings),\n"
            "[秒响应](docs/contract.md#秒响应-rules), [again](docs/contract.md#setup-1),\n"
            "[docs](docs/) and ![logo](docs/logo.png).\n"
            "[top](#title) [web](https://example.com/x.md) [mail](mailto:a@b.c) [ref] [code](#run-miaoxiang-serve)\n"
            "## Run `miaoxiang serve`\n"
            "`[not a link](../nowhere.md)`\n"
            "```\n[not a link either](../nowhere.md)\n```\n"
            "[ref]: docs/contract.md#setup\n"
        ),
        {
            "contract.md": "# Contract\n\n## 1. Devices and readings\n\n## 秒响应 rules\n\n## Setup\n\n## Setup\n",
            "logo.png": "",
        },
    )
    assert broken_links(root, doc_files(root)) == []


def test_checker_reports_each_broken_link_with_file_and_line(tmp_path: Path) -> None:
    root = _repo(
        tmp_path,
        (
            "# Title\n"
            "The [contract](../shared/CONTRACT.md) is [elsewhere](../outside.md).\n"
            "[missing](docs/missing.md) and [bad anchor](docs/a.md#no-such-heading)\n"
            '[self](#nowhere) <img src="docs/none.png"> [odd](file:///etc/passwd)\n'
        ),
        {"a.md": "# A\n\n[up](../README.md#title) [up bad](../README.md#titel)\n"},
    )
    assert broken_links(root, doc_files(root)) == [
        "README.md:2 -> ../shared/CONTRACT.md: points outside the repository",
        "README.md:2 -> ../outside.md: points outside the repository",
        "README.md:3 -> docs/missing.md: no such file docs/missing.md",
        "README.md:3 -> docs/a.md#no-such-heading: no heading with anchor #no-such-heading in docs/a.md",
        "README.md:4 -> #nowhere: no heading with anchor #nowhere in README.md",
        "README.md:4 -> file:///etc/passwd: not a relative link"
        " (only http, https and mailto links may leave the repository)",
        "README.md:4 -> docs/none.png: no such file docs/none.png",
        "docs/a.md:3 -> ../README.md#titel: no heading with anchor #titel in README.md",
    ]
