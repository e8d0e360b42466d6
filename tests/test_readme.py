"""The README's Python examples run as shown."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading: str) -> str:
    """The first ```python block of the README section ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n{heading}\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_library_training_loop_runs_as_shown(tmp_path, monkeypatch, capsys):
    code = python_block_after("## Using fastconv as a library")
    assert "for x, y in batches(" in code and "fastconv.load(" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["epoch 1", "epoch 2", "epoch 3"]
    assert float(printed[-1].rsplit(" ", 1)[1]) > 0.5  # it learns (chance is 0.1)
    assert (tmp_path / "digits-cnn.npz").is_file()
