"""Selecting a backend: environment variable, set_backend, use_backend."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
import fastconv.functional as F


def test_numpy_is_always_available():
    assert "numpy" in fastconv.available_backends()


@pytest.mark.parametrize("name", fastconv.available_backends())
def test_set_and_get_backend(name):
    previous = fastconv.get_backend()
    try:
        backend = fastconv.set_backend(name)
        assert fastconv.get_backend() is backend
        assert backend.name == name
    finally:
        fastconv.set_backend(previous.name)


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError) as excinfo:
        fastconv.set_backend("tensorflow")
    message = str(excinfo.value)
    assert "tensorflow" in message and "numpy" in message and "numba" in message


def test_use_backend_restores_previous_even_on_error():
    before = fastconv.get_backend()
    with pytest.raises(RuntimeError):
        with fastconv.use_backend("numpy") as inside:
            assert fastconv.get_backend() is inside
            raise RuntimeError("boom")
    assert fastconv.get_backend() is before


def test_dispatch_goes_to_the_selected_backend(monkeypatch):
    calls = []
    with fastconv.use_backend("numpy") as backend:
        original = backend.avg_pool2d
        monkeypatch.setattr(backend, "avg_pool2d", lambda *a: calls.append(a) or original(*a))
        F.avg_pool2d(np.ones((1, 1, 4, 4), np.float32), 2)
    assert len(calls) == 1 and calls[0][1:] == ((2, 2), (2, 2), (0, 0))


def _backend_in_subprocess(value):
    env = dict(os.environ, FASTCONV_BACKEND=value)
    return subprocess.run([sys.executable, "-c", "import fastconv; print(fastconv.get_backend().name)"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", fastconv.available_backends())
def test_environment_variable_selects_backend(name):
    result = _backend_in_subprocess(name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_environment_variable_with_unknown_name_fails_clearly():
    result = _backend_in_subprocess("cuda")
    assert result.returncode != 0
    assert "unknown backend 'cuda'" in result.stderr


def test_register_backend_adds_a_backend(tmp_path, monkeypatch):
    """A new backend is one module with a BACKEND object; layers need no change."""
    module = tmp_path / "my_backend.py"
    module.write_text(
        "import sys\n"
        "from fastconv.backends import numpy_backend as ref\n"
        "name = 'mine'\n"
        "for _k in ('im2col', 'col2im', 'conv2d', 'conv2d_backward', 'avg_pool2d',\n"
        "           'avg_pool2d_backward', 'max_pool2d', 'max_pool2d_backward', 'softmax_cross_entropy'):\n"
        "    setattr(sys.modules[__name__], _k, getattr(ref, _k))\n"
        "BACKEND = sys.modules[__name__]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from fastconv import backends

    monkeypatch.setattr(backends, "_BACKEND_MODULES", dict(backends._BACKEND_MODULES))
    fastconv.register_backend("mine", "my_backend")
    assert "mine" in fastconv.available_backends()
    with fastconv.use_backend("mine") as backend:
        assert backend.name == "mine"
        assert F.avg_pool2d(np.ones((1, 1, 2, 2), np.float32), 2)[0, 0, 0, 0] == 1.0


def test_blas_thread_limit_follows_the_backend():
    """numba asks for single-threaded BLAS while it trains; numpy leaves BLAS alone;
    the previous limit comes back on exit."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if "numba" not in fastconv.available_backends():
        pytest.skip("numba is not installed")

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    with fastconv.use_backend("numba"), fastconv.backends.blas_thread_limit():
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
    with fastconv.use_backend("numpy"), fastconv.backends.blas_thread_limit():
        assert blas_threads() == before
