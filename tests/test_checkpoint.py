"""Checkpoint files: damaged or hostile ones are refused before they cost memory or a
traceback, and the Python API saves and loads models."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import models
from fastconv.train import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint

@pytest.fixture
def checkpoint_path(small_checkpoint, tmp_path) -> Path:
    """A real (small) training checkpoint in a run folder."""
    shutil.copy(small_checkpoint, tmp_path / CHECKPOINT_NAME)
    return tmp_path / CHECKPOINT_NAME


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path: Path, members: dict[str, bytes], deflated=()) -> None:
    """Members stored as np.savez does, except those named in ``deflated``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)


def edit_meta(path: Path, edit) -> None:
    members = members_of(path)
    with np.load(path) as npz:
        meta = json.loads(str(npz["meta"]))
    edit(meta)
    members["meta.npy"] = npy_bytes(np.array(json.dumps(meta)))
    write_members(path, members)


def peak_memory(action) -> int:
    """Bytes allocated at the peak while ``action()`` runs (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ item 7: members
def test_a_deflated_bomb_member_is_refused_without_inflating_it(checkpoint_path):
    with zipfile.ZipFile(checkpoint_path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("log/bomb.npy", npy_bytes(np.zeros(8 << 20)))  # 64 MB inflated
    assert checkpoint_path.stat().st_size < 1 << 20

    def load():
        with pytest.raises(ValueError, match="unknown member 'log/bomb.npy'"):
            load_checkpoint(checkpoint_path)
    assert peak_memory(load) < 4 << 20


def test_a_compressed_member_is_refused_even_under_a_known_name(checkpoint_path):
    members = members_of(checkpoint_path)
    members["log/loss.npy"] = npy_bytes(np.zeros(8 << 20))
    write_members(checkpoint_path, members, deflated=["log/loss.npy"])
    assert checkpoint_path.stat().st_size < 1 << 20

    def load():
        with pytest.raises(ValueError, match="'log/loss' is compressed"):
            load_checkpoint(checkpoint_path)
    assert peak_memory(load) < 4 << 20


def test_a_header_declaring_more_data_than_stored_is_refused(checkpoint_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (4_000_000_000,)})
    members = members_of(checkpoint_path)
    members["log/loss.npy"] = header.getvalue() + bytes(16)
    write_members(checkpoint_path, members)

    def load():
        with pytest.raises(ValueError, match="declares 32000000000 bytes of data but holds 16"):
            load_checkpoint(checkpoint_path)
    assert peak_memory(load) < 4 << 20


def test_members_outside_the_format_are_errors(checkpoint_path):
    members = members_of(checkpoint_path)
    members["notes.txt"] = b"hello"
    write_members(checkpoint_path, members)
    with pytest.raises(ValueError, match="unknown member 'notes.txt'"):
        load_checkpoint(checkpoint_path)


# ------------------------------------------------------------------ item 8: damage
def test_truncated_and_bit_flipped_files_are_value_errors_naming_the_file(checkpoint_path):
    data = checkpoint_path.read_bytes()
    checkpoint_path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=f"{checkpoint_path} is not a fastconv checkpoint"):
        load_checkpoint(checkpoint_path)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40  # inside an array's bytes: only the CRC notices
    checkpoint_path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="(?i)crc"):
        load_checkpoint(checkpoint_path)


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["hyperparameters"].update(batch_size="50"), "batch_size"),
    (lambda m: m["progress"].update(epochs_done=None), "epochs_done"),
    (lambda m: m.update(history={"epoch": 1}), "history"),
    (lambda m: m["history"][0].pop("test_acc"), "test_acc"),
    (lambda m: m.update(model_config={"dtype": "float16"}), "dtype"),
    (lambda m: m.update(model=7), "model"),
    (lambda m: m.pop("optimizer"), "optimizer"),
    (lambda m: m["hyperparameters"].update(extra=1), "extra"),
])
def test_wrong_typed_metadata_is_one_error_naming_file_and_field(checkpoint_path, edit, field):
    edit_meta(checkpoint_path, edit)
    with pytest.raises(ValueError, match=f"{checkpoint_path}: malformed checkpoint: .*{field}"):
        load_checkpoint(checkpoint_path)


def test_a_config_the_builder_rejects_names_the_file(checkpoint_path):
    edit_meta(checkpoint_path, lambda m: m["model_config"].update(width=3))
    with pytest.raises(ValueError, match=f"{checkpoint_path}: the checkpoint does not rebuild model 'cnn'"):
        model_from_checkpoint(checkpoint_path)


def test_a_training_checkpoint_loads(checkpoint_path):
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint.is_training_run and checkpoint.complete
    model = model_from_checkpoint(checkpoint)
    assert model.num_parameters() == 4842


# ------------------------------------------------------------------ item 14: the API
def tiny_dropout_net(dtype=np.float32, seed: int = 0):
    from fastconv import nn

    rng = nn.as_generator(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8, dtype=dtype, rng=rng), nn.BatchNorm1d(8, dtype=dtype),
                         nn.ReLU(), nn.Dropout(0.5, rng=rng), nn.Linear(8, 3, dtype=dtype, rng=rng))


def test_save_and_load_rebuild_the_model_with_weights_and_rng(tmp_path, monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny", tiny_dropout_net)
    model = models.build_model("tiny", dtype="float64", seed=3)
    x = np.random.default_rng(0).random((5, 1, 4, 4))
    model.forward(x)  # moves BN statistics and the dropout generator
    path = fastconv.save(model, tmp_path / "tiny.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]  # no temp file left
    loaded = fastconv.load(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    assert loaded.parameters()[0].dtype == np.float64
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))  # same dropout mask too
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert json.loads(str(npz["meta"]))["model_config"] == {"dtype": "float64", "seed": 3}


def test_save_takes_a_model_built_without_the_registry(tmp_path):
    model = models.report000_cnn(seed=5)
    loaded = fastconv.load(fastconv.save(model, tmp_path / "m.npz"))   # from its stored architecture
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)


def test_load_state_dict_takes_np_load_of_a_checkpoint(checkpoint_path, tmp_path):
    model = models.build_model("cnn")
    with np.load(checkpoint_path) as npz:
        model.load_state_dict(npz)
    expected = model_from_checkpoint(checkpoint_path).state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[key])
    fastconv.save(model, tmp_path / "saved.npz")
    fresh = models.build_model("cnn", seed=1)
    fresh.load_state_dict(np.load(tmp_path / "saved.npz"))
    np.testing.assert_array_equal(fresh.parameters()[0].data, model.parameters()[0].data)


def test_a_saved_model_is_no_training_run(tmp_path):
    from fastconv.train import train

    fastconv.save(models.build_model("cnn"), tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="not a training run"):
        train("cnn", "digits", epochs=1, out_dir=tmp_path, resume=True, progress=False)
