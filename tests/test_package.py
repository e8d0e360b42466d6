"""``import fastconv``: fast (no numba), sub-modules on attribute access (PEP 562),
and `fastconv.manual_seed` seeding every default generator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv.data import batches

ROOT = Path(__file__).resolve().parents[1]


def test_import_loads_neither_numba_nor_a_backend_and_submodules_come_on_access():
    code = ("import sys, numpy as np, fastconv; "
            "assert 'numba' not in sys.modules, 'numba imported'; "
            "assert 'fastconv.functional' not in sys.modules; "
            "x = np.ones((1, 1, 4, 4), np.float32); "
            "fastconv.set_backend('numpy'); "
            "print(fastconv.functional.conv2d(x, x).item(), fastconv.nn.Linear.__name__, "
            "'numba' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "FASTCONV_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["16.0", "Linear", "False"]


def test_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastconv.nope
    assert {"functional", "nn", "data"} <= set(dir(fastconv))


@pytest.fixture
def seeded():
    yield fastconv.manual_seed
    fastconv.manual_seed(None)


def _draws():
    return (nn.Linear(5, 3).weight.data.copy(), nn.Conv2d(1, 2, 3).weight.data.copy(),
            nn.Dropout(0.5).forward(np.ones(40, np.float32)),
            [y.tolist() for _, y in batches(np.zeros((6, 1, 2, 2), np.uint8), np.arange(6), 3)])


def test_manual_seed_makes_default_generators_reproducible(seeded):
    seeded(7)
    first = _draws()
    seeded(7)
    again = _draws()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], nn.Linear(5, 3).weight.data)  # the stream moves on
    seeded(8)
    assert not np.array_equal(first[0], _draws()[0])


def test_without_manual_seed_defaults_are_fresh_entropy(seeded):
    seeded(None)
    assert not np.array_equal(nn.Linear(5, 3).weight.data, nn.Linear(5, 3).weight.data)


def test_explicit_rng_is_unaffected_by_manual_seed(seeded):
    want = nn.Linear(5, 3, rng=1).weight.data
    seeded(99)
    np.testing.assert_array_equal(nn.Linear(5, 3, rng=1).weight.data, want)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_manual_seed_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match="seed must be a non-negative int"):
        fastconv.manual_seed(bad)
