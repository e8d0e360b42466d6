"""`fastconv compare`'s table: no speed-up for models without convolutions, whose
layers are the same NumPy code on every backend."""

from __future__ import annotations

from fastconv.compare import _add_speedups, _is_convolutional, format_table


def _row(backend, model, seconds):
    return dict(backend=backend, model=model, convolutional=_is_convolutional(model), loss="L",
                parameters=1, seconds_first_epoch=seconds, seconds_per_epoch=seconds,
                test_acc=0.9, best_test_acc=0.9)


def test_speed_up_only_for_models_with_convolutions():
    rows = [_row("numpy", "cnn", 10.0), _row("numba", "cnn", 2.0),
            _row("numpy", "mlp1", 1.0), _row("numba", "mlp1", 0.9)]
    _add_speedups(rows)
    assert [r["speedup_vs_numpy"] for r in rows] == [1.0, 5.0, None, None]
    table = format_table(dict(dataset="d", train_images=1, test_images=1, epochs=1, seed=0, rows=rows))
    assert "conv speed-up vs numpy" in table
    assert "| 5.0x |" in table and table.count("n/a (no conv)") == 2
    assert "an MLP (no conv) runs the same NumPy" in table
