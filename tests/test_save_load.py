"""`fastconv.save` / `fastconv.load` for any model: the architecture as JSON for trees
of built-in modules, weights only (loaded into an instance) for a user's own Module
classes, older files, and bad files."""

from __future__ import annotations

import inspect
import json
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import models, nn
from fastconv.nn.architecture import CannotDescribe, build, built_in_classes, describe
from tests.test_nn_modules import Net


def assert_same_model(loaded, original, x):
    """Same class tree, state (bit for bit) and eval-mode outputs."""
    assert repr(loaded) == repr(original)
    assert list(loaded.state_dict()) == list(original.state_dict())
    for key, value in original.state_dict().items():
        assert loaded.state_dict()[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)
    loaded.eval()
    original.eval()
    with fastconv.use_backend("numpy"):
        np.testing.assert_array_equal(loaded(x), original(x))


def trained_a_little(model, x):
    """Move BN statistics off their initial values (one training-mode forward)."""
    with fastconv.use_backend("numpy"):
        model.train()
        model(x)
    return model


def user_sequential():
    rng = nn.as_generator(4)
    kw = dict(dtype=np.float64, rng=rng)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="same", **kw), nn.LeakyReLU(0.1),
        nn.Concat(nn.Conv2d(4, 2, 1, **kw), nn.Sequential(nn.Conv2d(4, 3, 3, padding=1, dilation=1, groups=1, **kw),
                                                           nn.ReLU6())),
        nn.Residual(nn.Sequential(nn.Conv2d(5, 6, 3, stride=2, padding=1, bias=False, **kw),
                                  nn.BatchNorm2d(6, eps=1e-3, momentum=0.2, dtype=np.float64)),
                    nn.Sequential(nn.Conv2d(5, 6, 1, stride=2, **kw))),
        nn.Add(nn.Identity(), nn.Sequential(nn.Upsample(scale_factor=2), nn.AvgPool2d(2))),
        nn.AdaptiveMaxPool2d((3, 2)), nn.Sigmoid(), nn.Tanh(), nn.Dropout(0.25, rng=rng),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 8, **kw), nn.BatchNorm1d(8, dtype=np.float64),
        nn.ReLU(), nn.Linear(8, 3, bias=False, **kw))


ZOO = {
    "resnet20": lambda: models.resnet20(num_classes=3, seed=1),
    "vgg11": lambda: models.vgg11(in_channels=2, seed=1),
    "mobilenetv2": lambda: models.mobilenetv2(dtype=np.float64, seed=1),
    "report000_cnn": lambda: models.report000_cnn(seed=2),
    "letters-cnn (registry)": lambda: models.build_model("letters-cnn", dropout=0.3, seed=3),
    "dcgan-generator": lambda: models.dcgan_generator(latent_dim=5, width=3),
    "dcgan-discriminator": lambda: models.dcgan_discriminator(width=3),
    "user Sequential": user_sequential,
}
INPUTS = {"vgg11": (2, 2, 32, 32), "letters-cnn (registry)": (2, 1, 32, 32), "dcgan-generator": (2, 5, 1, 1),
          "user Sequential": (2, 1, 5, 7), "mobilenetv2": (2, 1, 28, 28)}


@pytest.mark.parametrize("name", list(ZOO))
def test_round_trip(tmp_path, name):
    model = ZOO[name]()
    dtype = model.parameters()[0].dtype
    x = np.random.default_rng(0).random(INPUTS.get(name, (2, 1, 28, 28))).astype(dtype)
    trained_a_little(model, x)
    path = fastconv.save(model, tmp_path / "model.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]      # written atomically
    loaded = fastconv.load(path)
    assert type(loaded) is type(model) and loaded.training      # as a freshly built model
    assert_same_model(loaded, model, x)
    with np.load(path, allow_pickle=False) as npz:               # plain arrays and JSON
        meta = json.loads(str(npz["meta"]))
    assert meta["format"] == 2 and meta["architecture"]["class"] == "Sequential"
    assert meta["model"] == ("letters-cnn" if "registry" in name else None)


def test_a_reloaded_registry_model_keeps_its_name(tmp_path):
    model = models.build_model("cnn", seed=4)
    loaded = fastconv.load(fastconv.save(model, tmp_path / "a.npz"))
    assert loaded.build_config == {"model": "cnn", "model_config": {"seed": 4}}
    fastconv.save(loaded, tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as npz:
        assert json.loads(str(npz["meta"]))["model"] == "cnn"


def test_dropout_generators_survive_the_round_trip(tmp_path):
    model = user_sequential()
    x = np.random.default_rng(1).random((3, 1, 5, 7))
    trained_a_little(model, x)
    loaded = fastconv.load(fastconv.save(model, tmp_path / "m.npz"))
    with fastconv.use_backend("numpy"):
        np.testing.assert_array_equal(loaded(x), model(x))       # training mode: the same dropout mask


# --------------------------------------------------------------------- a user's own Module
def test_a_custom_module_needs_an_instance(tmp_path):
    model = Net()
    x = np.random.default_rng(2).random((2, 1, 4, 3))
    trained_a_little(model, x)
    path = fastconv.save(model, tmp_path / "net.npz")
    with pytest.raises(ValueError, match=r"holds a tests.test_nn_modules.Net whose architecture fastconv "
                                         r"cannot rebuild .*fastconv.load\(path, model=instance\)") as caught:
        fastconv.load(path)
    assert "\n" not in str(caught.value)
    fresh = Net()
    assert fastconv.load(path, model=fresh) is fresh
    assert_same_model(fresh, model, x)
    other = Net()
    other.load_state_dict(fastconv.load_state(path))
    assert_same_model(other, model, x)


def test_a_custom_module_inside_a_built_in_tree_is_named(tmp_path):
    from tests.test_nn_modules import Block

    model = nn.Sequential(nn.Conv2d(1, 2, 1, dtype=np.float64, rng=0), Block(2))
    path = fastconv.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"\(root\).layers\[1\] is a tests.test_nn_modules.Block"):
        fastconv.load(path)
    fresh = nn.Sequential(nn.Conv2d(1, 2, 1, dtype=np.float64, rng=1), Block(2, seed=5))
    fastconv.load(path, model=fresh)
    np.testing.assert_array_equal(fresh[1].conv.weight.data, model[1].conv.weight.data)


def test_loading_into_a_model_that_does_not_fit_names_the_keys(tmp_path):
    path = fastconv.save(models.report000_cnn(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="do not fit the Sequential: .*unexpected key"):
        fastconv.load(path, model=models.mlp1())


def test_shared_modules_are_saved_as_weights(tmp_path):
    layer = nn.Linear(3, 3, rng=0)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    path = fastconv.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"\(root\).layers\[2\] is the same module as \(root\).layers\[0\]"):
        fastconv.load(path)
    fresh_layer = nn.Linear(3, 3, rng=1)
    fastconv.load(path, model=nn.Sequential(fresh_layer, nn.ReLU(), fresh_layer))
    np.testing.assert_array_equal(fresh_layer.weight.data, layer.weight.data)


# --------------------------------------------------------------------- older files
def write_npz(path, meta: dict, arrays: dict) -> None:
    np.savez(path, meta=np.array(json.dumps(meta)), **{f"model/{k}": v for k, v in arrays.items()})


def test_a_format_1_model_file_still_loads(tmp_path):
    """The layout `fastconv.save` wrote before architectures were stored."""
    model = models.build_model("letters-cnn", batch_norm=False, dropout=0.2, seed=6)
    x = np.random.default_rng(3).random((2, 1, 32, 32), dtype=np.float32)
    trained_a_little(model, x)
    from fastconv.checkpoint import rng_states

    meta = {"format": 1, "kind": "model", "model": "letters-cnn",
            "model_config": {"batch_norm": False, "dropout": 0.2, "seed": 6},
            "rng": rng_states(model), "fastconv_version": "0.1.0"}
    write_npz(tmp_path / "old.npz", meta, model.state_dict())
    loaded = fastconv.load(tmp_path / "old.npz")
    assert_same_model(loaded, model, x)
    assert loaded.build_config["model"] == "letters-cnn"


def test_a_training_checkpoint_loads_with_the_new_api(small_checkpoint):
    model = fastconv.load(small_checkpoint)
    assert model.num_parameters() == 4842
    fresh = models.report000_cnn(seed=9)
    fastconv.load(small_checkpoint, model=fresh)
    np.testing.assert_array_equal(fresh.parameters()[0].data, model.parameters()[0].data)
    assert set(fastconv.load_state(small_checkpoint)) == set(model.state_dict())


# --------------------------------------------------------------------- bad files
def saved_meta(tmp_path):
    path = fastconv.save(models.report000_cnn(), tmp_path / "m.npz")
    with np.load(path) as npz:
        return path, json.loads(str(npz["meta"])), {k[6:]: npz[k] for k in npz.files if k.startswith("model/")}


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["architecture"].update({"class": "Evil"}), r"architecture at \(root\): unknown module class 'Evil'"),
    (lambda m: m["architecture"]["config"]["layers"][0].update({"class": "os.system"}), "unknown module class"),
    (lambda m: m["architecture"]["config"]["layers"][3]["config"].update({"in_features": -1}),
     r"\(root\).layers\[3\]: Linear cannot be built"),
    (lambda m: m["architecture"]["config"]["layers"][3]["config"].update({"shell": "rm"}), "unexpected keyword"),
    (lambda m: m["architecture"]["config"].update({"layers": "conv"}), "Sequential cannot be built"),
    (lambda m: m.update({"architecture": ["Sequential"]}), r"malformed checkpoint: meta\['architecture'\]"),
    (lambda m: m.update({"architecture": None}), "cannot rebuild"),
    (lambda m: m.update({"format": 3}), "this fastconv reads formats 1 and 2"),
    (lambda m: m.update({"kind": "training"}), "kind 'training' in a format 2 file"),
    (lambda m: m.pop("model_class"), "has no 'model_class'"),
])
def test_bad_architectures_are_one_line_value_errors(tmp_path, edit, message):
    path, meta, arrays = saved_meta(tmp_path)
    edit(meta)
    write_npz(path, meta, arrays)
    with pytest.raises(ValueError, match=message) as caught:
        fastconv.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_deeply_nested_architecture_is_refused(tmp_path):
    path, meta, arrays = saved_meta(tmp_path)
    spec = {"class": "ReLU", "config": {}}
    for _ in range(300):
        spec = {"class": "Sequential", "config": {"layers": [spec]}}
    meta["architecture"] = spec
    write_npz(path, meta, {})
    with pytest.raises(ValueError, match="nested deeper than"):
        fastconv.load(path)


def test_a_truncated_file_is_a_value_error(tmp_path):
    path = fastconv.save(models.report000_cnn(), tmp_path / "m.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is not a fastconv checkpoint"):
        fastconv.load(path)
    assert not zipfile.is_zipfile(path)


def test_save_takes_modules_only(tmp_path):
    with pytest.raises(TypeError, match="takes a fastconv.nn.Module"):
        fastconv.save({"weight": np.zeros(2)}, tmp_path / "m.npz")


# --------------------------------------------------------------------- the architecture itself
def test_every_built_in_module_is_describable():
    exported = {name for name in nn.__all__ if inspect.isclass(getattr(nn, name))
                and issubclass(getattr(nn, name), nn.Module) and name != "Module"}
    assert exported == set(built_in_classes())


def test_descriptions_survive_json_and_rebuild_the_same_configs():
    model = user_sequential()
    spec = describe(model)
    assert json.loads(json.dumps(spec)) == json.loads(json.dumps(describe(build(json.loads(json.dumps(spec))))))
    for module in nn.ModuleList([nn.Conv2dReLUAvgPool(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), input_grad=False),
                                 nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
                                 nn.Conv2dReLU(2, 2, 3, padding="valid", dtype="float64"),
                                 nn.MaxPool2d((2, 3), stride=1, padding=1), nn.ModuleList([nn.ReLU()])]):
        rebuilt = build(json.loads(json.dumps(describe(module))))
        assert type(rebuilt) is type(module) and rebuilt.config().keys() == module.config().keys()
        assert repr(rebuilt) == repr(module)


def test_a_subclass_of_a_built_in_is_not_described_as_it():
    class MyConv(nn.Conv2d):
        pass

    with pytest.raises(CannotDescribe, match="MyConv, not a built-in"):
        describe(nn.Sequential(MyConv(1, 1, 1)))
