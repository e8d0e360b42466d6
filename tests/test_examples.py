"""The example scripts' command lines (the examples themselves are run by hand)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_reference_help_works_without_torch():
    # torch set to None in sys.modules: every `import torch` fails, as when not installed
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv[0] = 'torch_reference.py'; "
            f"runpy.run_path({str(ROOT / 'examples' / 'torch_reference.py')!r}, run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: torch_reference.py")
    done = subprocess.run([sys.executable, "-c", code, "--epochs", "1"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1 and "needs PyTorch" in done.stderr and "Traceback" not in done.stderr


def test_visualize_example_takes_the_checkpoint_like_fastconv_viz(monkeypatch, tmp_path, capsys):
    example = _load("visualize")
    seen = []
    monkeypatch.setattr(example, "visualize", lambda checkpoint, out, **kw: seen.append(checkpoint)
                        or {"files": []})
    path = tmp_path / "model.npz"
    assert example.main([str(path)]) == 0
    assert example.main(["--checkpoint", str(path)]) == 0
    assert seen == [path, path]
