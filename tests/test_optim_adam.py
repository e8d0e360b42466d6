"""`fastconv.optim.Adam` / `AdamW` (+ amsgrad): trajectories against `torch.optim`, a
step by hand, state dicts through ``.npz``, and `make_optimizer`."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fastconv import nn
from fastconv.optim import SGD, Adam, AdamW, StepLR, make_optimizer

SHAPES = [(3,), (2, 4)]


def random_grads(steps, seed=0, dtype=np.float64):
    """Per step, one gradient per parameter; scales spread over orders of magnitude so
    eps and the bias corrections all matter."""
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 2, size=shape)).astype(dtype)
             for shape in SHAPES] for _ in range(steps)]


def initial_params(dtype=np.float64):
    rng = np.random.default_rng(42)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def run_ours(cls, grads, dtype=np.float64, **kwargs):
    params = [nn.Parameter(p) for p in initial_params(dtype)]
    opt = cls(params, **kwargs)
    history = []
    for step_grads in grads:
        opt.zero_grad()
        for param, grad in zip(params, step_grads):
            param.grad += grad
        opt.step()
        history.append([p.data.copy() for p in params])
    return history, opt


def run_torch(name, grads, dtype=np.float64, **kwargs):
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.from_numpy(p)) for p in initial_params(dtype)]
    opt = getattr(torch.optim, name)(params, **kwargs)
    history = []
    for step_grads in grads:
        for param, grad in zip(params, step_grads):
            param.grad = torch.from_numpy(grad.copy())
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


@pytest.mark.parametrize("cls", [Adam, AdamW], ids=["Adam", "AdamW"])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_trajectory_matches_torch(cls, amsgrad, weight_decay, dtype):
    grads = random_grads(8, seed=int(amsgrad) + 2 * int(weight_decay * 10), dtype=dtype)
    kwargs = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad)
    ours, opt = run_ours(cls, grads, dtype, **kwargs)
    theirs = run_torch(cls.__name__, grads, dtype, **kwargs)
    tol = dict(rtol=1e-13, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-7)
    for step, (mine, ref) in enumerate(zip(ours, theirs)):
        for got, want in zip(mine, ref):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol, err_msg=f"step {step + 1}")
    assert opt.steps == 8


def test_weight_decay_differs_between_adam_and_adamw():
    """Adam's L2 goes through the moments (so it is normalised away for a zero
    gradient); AdamW shrinks the weights directly."""
    zero = [[np.zeros(s) for s in SHAPES]]
    adam, _ = run_ours(Adam, zero, lr=0.1, weight_decay=0.5)
    adamw, _ = run_ours(AdamW, zero, lr=0.1, weight_decay=0.5)
    w0 = initial_params()
    # Adam: g = 0.5 w, first step moves by lr * sign(g) (bias-corrected m / sqrt(v))
    np.testing.assert_allclose(adam[0][0], w0[0] - 0.1 * np.sign(w0[0]), rtol=1e-6)
    # AdamW: w *= 1 - lr*wd, and the zero gradient then moves nothing
    np.testing.assert_allclose(adamw[0][0], w0[0] * (1 - 0.1 * 0.5), rtol=1e-15)


def test_first_step_by_hand():
    """Step 1: m_hat = g, v_hat = g^2, so w -= lr * g / (|g| + eps)."""
    grads = random_grads(1)
    history, _ = run_ours(Adam, grads, lr=0.01, eps=1e-8)
    for w0, g, w1 in zip(initial_params(), grads[0], history[0]):
        np.testing.assert_allclose(w1, w0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_grad_left_untouched_and_zero_grad_clears():
    param = nn.Parameter(np.ones(3))
    opt = AdamW([param], lr=0.1, amsgrad=True)
    param.grad[:] = [1.0, -2.0, 0.5]
    opt.step()
    np.testing.assert_array_equal(param.grad, [1.0, -2.0, 0.5])
    opt.zero_grad()
    assert not param.grad.any()


@pytest.mark.parametrize("cls, amsgrad", [(Adam, False), (AdamW, True)])
def test_state_dict_round_trip_through_npz(cls, amsgrad):
    grads = random_grads(5, seed=3)
    full, _ = run_ours(cls, grads, lr=0.02, weight_decay=0.01, amsgrad=amsgrad)
    params = [nn.Parameter(p) for p in initial_params()]
    opt = cls(params, lr=0.02, weight_decay=0.01, amsgrad=amsgrad)
    for step_grads in grads[:3]:
        opt.zero_grad()
        for param, grad in zip(params, step_grads):
            param.grad += grad
        opt.step()
    state = opt.state_dict()
    expected = {"lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "step",
                "exp_avg.0", "exp_avg.1", "exp_avg_sq.0", "exp_avg_sq.1"}
    assert set(state) == expected | ({"max_exp_avg_sq.0", "max_exp_avg_sq.1"} if amsgrad else set())
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    resumed_params = [nn.Parameter(p.data.copy()) for p in params]
    resumed = cls(resumed_params, lr=1.0, amsgrad=not amsgrad)
    with np.load(buffer) as archive:
        resumed.load_state_dict(archive)
    assert resumed.steps == 3 and resumed.lr == 0.02 and resumed.amsgrad == amsgrad
    assert resumed.exp_avg[0] is not state["exp_avg.0"]
    for step_grads in grads[3:]:
        resumed.zero_grad()
        for param, grad in zip(resumed_params, step_grads):
            param.grad += grad
        resumed.step()
    for got, want in zip(resumed_params, full[-1]):
        np.testing.assert_array_equal(got.data, want)


@pytest.mark.parametrize("corrupt, message", [
    (lambda s: s.pop("exp_avg_sq.1"), "missing.*exp_avg_sq.1"),
    (lambda s: s.update({"max_exp_avg_sq.0": np.zeros(3)}), "unexpected.*max_exp_avg_sq.0"),
    (lambda s: s.update({"exp_avg.0": np.zeros(4)}), "exp_avg.0.*shape"),
    (lambda s: s.pop("step"), "missing.*step"),
    (lambda s: s.update({"beta1": 1.0}), "betas"),
])
def test_load_state_dict_is_strict(corrupt, message):
    _, opt = run_ours(Adam, random_grads(2), lr=0.1)
    state = opt.state_dict()
    corrupt(state)
    fresh = Adam([nn.Parameter(p) for p in initial_params()], lr=0.3)
    with pytest.raises(ValueError, match=message):
        fresh.load_state_dict(state)
    assert fresh.lr == 0.3 and fresh.steps == 0 and not fresh.exp_avg[0].any()


@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(betas=(0.9,)),
                                    dict(eps=-1e-8), dict(weight_decay=float("nan"))])
def test_rejects_bad_hyper_parameters(kwargs):
    with pytest.raises(ValueError):
        Adam([nn.Parameter(np.ones(2))], **kwargs)


def test_rejects_non_parameters():
    with pytest.raises(TypeError, match="Parameter"):
        AdamW([np.ones(2)])
    with pytest.raises(ValueError, match="empty"):
        Adam([])


def test_steplr_drives_adam_like_torch():
    torch = pytest.importorskip("torch")
    opt = Adam([nn.Parameter(np.ones(2))], lr=0.01)
    scheduler = StepLR(opt, 2, gamma=0.5)
    t_opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.01)
    t_scheduler = torch.optim.lr_scheduler.StepLR(t_opt, 2, gamma=0.5)
    for _ in range(5):
        t_opt.step()
        scheduler.step()
        t_scheduler.step()
        assert opt.lr == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)


def test_make_optimizer():
    params = [nn.Parameter(np.ones(2))]
    sgd = make_optimizer("sgd", params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, SGD) and sgd.momentum == 0.9 and sgd.weight_decay == 1e-4
    adam = make_optimizer("adam", params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    assert type(adam) is Adam and adam.betas == (0.9, 0.999) and adam.weight_decay == 1e-4
    adamw = make_optimizer("adamw", params, lr=1e-3)
    assert type(adamw) is AdamW and adamw.weight_decay == 0.0
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", params, lr=0.1)
