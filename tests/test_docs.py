"""The README and the documentation site: their code blocks marked runnable run as
shown, the README stays short and names no internal work units, its links resolve,
its test command is the one CI runs, and every ``FASTCONV_*`` variable the code reads
is in the environment table.

A code block is *runnable* when the line before its opening fence is exactly
``<!-- runnable -->`` (invisible on GitHub and on the site).  The runnable blocks of one
page run in order, in one fresh Python process, as one script (a page may build on its
earlier blocks, as the tutorial does), on the numpy backend, in a temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TUTORIAL = DOCS / "tutorial.md"
RUNNABLE = "<!-- runnable -->"
README_MAX_LINES = 300
TEST_COMMAND = "python -m pytest tests -q"

_BLOCK = re.compile(r"^<!-- runnable -->[ \t]*\n```python[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_WORK_UNIT = re.compile(r"\b(session|issue|stop)[ -]?#?\d+", re.I)
# 7-40 hex digits with at least one letter and one digit: an abbreviated or full commit hash
_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
_HISTORY = re.compile(r"what changed|tried and not kept|tried, measured, not kept", re.I)


def runnable_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number of the fence, code)`` of every runnable block of ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start()) + 2, match.group(1)) for match in _BLOCK.finditer(text)]


def pages_with_runnable_blocks() -> list[Path]:
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    return [page for page in pages if RUNNABLE in page.read_text(encoding="utf-8")]


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_the_marker_finds_the_blocks_it_should():
    """The README (library loop, kernels, backends) and the tutorial (eight steps) keep
    their runnable blocks, and every marker is followed by a python block."""
    assert len(runnable_blocks(README)) >= 3
    assert len(runnable_blocks(TUTORIAL)) >= 7
    for page in pages_with_runnable_blocks():
        text = page.read_text(encoding="utf-8")
        assert text.count(RUNNABLE) == len(runnable_blocks(page)), \
            f"{page.name}: a {RUNNABLE} marker not directly before a ```python block"


@pytest.mark.parametrize("page", pages_with_runnable_blocks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_run(page, tmp_path):
    parts = []
    for line, code in runnable_blocks(page):
        parts.append(f"# ---- {page.relative_to(ROOT)}, the block at line {line}\n{code}")
    script = tmp_path / "blocks.py"
    script.write_text("\n".join(parts), encoding="utf-8")
    env = dict(os.environ, FASTCONV_BACKEND="numpy", MPLBACKEND="Agg",
               FASTCONV_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{page.name}'s runnable blocks failed:\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{page.name}'s runnable blocks printed nothing"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_work_units_commit_hashes_or_history(page):
    text = page.read_text(encoding="utf-8")
    for pattern, what in ((_WORK_UNIT, "an internal work-unit name"), (_HASH, "a commit-hash-like word"),
                          (_HISTORY, "a development-history list")):
        found = [match.group(0) for match in pattern.finditer(text)]
        assert not found, f"{page.relative_to(ROOT)} has {what}: {found[:5]}"


def test_the_checks_catch_what_they_look_for():
    assert _WORK_UNIT.search("measured in Session 22") and _WORK_UNIT.search("issue-13 rows")
    assert _HASH.search("against commit bbb7f67") and not _HASH.search("2048 x 2048, 2026-12-04")
    assert not _WORK_UNIT.search("one Python session, or an issue tracker")


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_test_command_is_the_one_ci_runs():
    readme = README.read_text(encoding="utf-8")
    assert f"```bash\n{TEST_COMMAND}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in ci.splitlines()
    assert "mkdocs build --strict" in ci


_DURATION = r"\d+(\.\d+)? (s|min)"
MEASURED = rf"{_DURATION}(, {_DURATION})*( \([^()]+\))?"


def test_first_run_times_block_holds_a_table_of_measured_or_tbd_cells():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- first-run-times -->\n(.*?)<!-- /first-run-times -->", text, re.S)
    assert block, "README.md has no <!-- first-run-times --> ... <!-- /first-run-times --> block"
    rows = [line for line in block.group(1).splitlines() if line.startswith("| `fastconv")]
    commands = [row.split("|")[1].strip() for row in rows]
    assert any("train" in c for c in commands) and any("bench --quick" in c for c in commands), commands
    assert any(c.startswith("`fastconv bench`") for c in commands), commands
    for row in rows:
        for cell in [c.strip() for c in row.strip("|").split("|")][1:]:
            # one or more measured durations ("15.4 s, 14.9 s"), perhaps with a note in brackets
            assert cell == "TBD" or re.fullmatch(MEASURED, cell), f"cell {cell!r} in {row}"


def _variables_in(paths) -> set[str]:
    names = set()
    for path in paths:
        names.update(re.findall(r"FASTCONV_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    return names


def test_every_environment_variable_is_in_the_table():
    code = [*(ROOT / "fastconv").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), ROOT / ".ci" / "run"]
    used = _variables_in(code)
    assert {"FASTCONV_BACKEND", "FASTCONV_NUM_THREADS", "FASTCONV_DATA"} <= used
    table = (DOCS / "guide" / "environment.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(FASTCONV_[A-Z0-9_]+)`(?:, `(FASTCONV_[A-Z0-9_]+)`)?", table, re.M))
    listed = {name for pair in listed for name in pair if name}
    assert not used - listed, f"FASTCONV_* variables missing from docs/guide/environment.md: {sorted(used - listed)}"


def _help(args) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _option_entries(help_text: str) -> list[tuple[str, str]]:
    """``(invocation, whole entry)`` of each option of an argparse help, e.g.
    ``("--epochs EPOCHS", "--epochs EPOCHS  training epochs (default: 10)")``."""
    entries = []
    for line in help_text.splitlines():
        if re.match(r"^  -", line):
            invocation = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            entries.append([invocation, line.strip()])
        elif entries and re.match(r"^\s{6,}\S", line) and entries[-1] is not None:
            entries[-1][1] += " " + line.strip()
        else:
            if entries and entries[-1] is not None:
                entries.append(None)
    return [tuple(entry) for entry in entries if entry is not None]


def test_fastconv_info_help_describes_the_command():
    text = _help(["-m", "fastconv.cli", "info"])
    description = text.split("\n\n")[1] if "\n\n" in text else ""
    assert "backends" in description and not description.lstrip().startswith("options"), text


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_show_their_defaults_in_help(example):
    """Every option that takes a value says its default (flags are off by default)."""
    entries = _option_entries(_help([str(example)]))
    assert entries, f"{example.name} --help lists no options"
    valued = [(invocation, text) for invocation, text in entries
              if re.search(r"[A-Z_]{2,}|\{", invocation.split(",")[-1].strip().partition(" ")[2])]
    assert valued, f"{example.name} --help: no option takes a value?"
    missing = [invocation for invocation, text in valued if "default" not in text]
    assert not missing, f"{example.name} --help: no default shown for {missing}"
