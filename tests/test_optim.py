"""`fastconv.optim`: SGD (momentum, weight decay) and StepLR, by hand and against PyTorch."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fastconv import nn
from fastconv.optim import SGD, StepLR

GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.2, 0.3, 0.0]), np.array([0.1, 0.1, -0.4])]
W0 = np.array([1.0, -2.0, 0.5])


def run_sgd(lr, momentum, weight_decay, steps=3):
    param = nn.Parameter(W0.copy())
    opt = SGD([param], lr=lr, momentum=momentum, weight_decay=weight_decay)
    for grad in GRADS[:steps]:
        opt.zero_grad()
        param.grad += grad
        opt.step()
    return param, opt


def test_sgd_three_steps_by_hand():
    param, _ = run_sgd(lr=0.1, momentum=0.9, weight_decay=0.01)
    # first coordinate, worked out by hand:
    # g1 = 0.5 + 0.01*1       = 0.51        buf = 0.51                   w = 0.949
    # g2 = -0.2 + 0.01*0.949  = -0.19051    buf = 0.459 - 0.19051        w = 0.922151
    # g3 = 0.1 + 0.01*0.922151= 0.10922151  buf = 0.241641 + 0.10922151  w = 0.887064749
    assert param.data[0] == pytest.approx(0.887064749, abs=1e-12)
    # all coordinates, from the update rule written out in scalars
    for i in range(3):
        w, buf = W0[i], 0.0
        for grad in GRADS:
            g = grad[i] + 0.01 * w
            buf = 0.9 * buf + g
            w -= 0.1 * buf
        assert param.data[i] == pytest.approx(w, abs=1e-12)


def test_sgd_without_momentum_is_plain_gradient_descent():
    param, opt = run_sgd(lr=0.5, momentum=0.0, weight_decay=0.0)
    np.testing.assert_allclose(param.data, W0 - 0.5 * sum(GRADS), rtol=1e-12)
    assert opt.momentum_buffers is None


def test_sgd_leaves_grad_untouched_and_zero_grad_clears():
    param = nn.Parameter(W0.copy())
    opt = SGD([param], lr=0.1, momentum=0.5, weight_decay=0.1)
    param.grad += GRADS[0]
    opt.step()
    np.testing.assert_array_equal(param.grad, GRADS[0])
    opt.zero_grad()
    assert not param.grad.any()


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (1e-4, 2e-4), (0.5, 0.1)])
def test_sgd_matches_torch(momentum, weight_decay):
    torch = pytest.importorskip("torch")
    param, _ = run_sgd(lr=0.1, momentum=momentum, weight_decay=weight_decay)
    t_param = torch.nn.Parameter(torch.from_numpy(W0.copy()))
    t_opt = torch.optim.SGD([t_param], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for grad in GRADS:
        t_param.grad = torch.from_numpy(grad.copy())
        t_opt.step()
    np.testing.assert_allclose(param.data, t_param.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_sgd_keeps_float32():
    param = nn.Parameter(np.ones(4, dtype=np.float32))
    opt = SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-3)
    param.grad[:] = 1
    opt.step()
    assert param.data.dtype == np.float32 and opt.momentum_buffers[0].dtype == np.float32


def test_sgd_state_dict_round_trip_through_npz():
    param, opt = run_sgd(lr=0.1, momentum=0.9, weight_decay=0.01, steps=2)
    state = opt.state_dict()
    assert set(state) == {"lr", "momentum", "weight_decay", "momentum_buffer.0"}
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)

    resumed_param = nn.Parameter(param.data.copy())
    resumed = SGD([resumed_param], lr=1.0, momentum=0.9)
    with np.load(buffer) as archive:
        resumed.load_state_dict(archive)
    assert resumed.lr == 0.1 and resumed.weight_decay == 0.01
    np.testing.assert_array_equal(resumed.momentum_buffers[0], opt.momentum_buffers[0])
    assert resumed.momentum_buffers[0] is not state["momentum_buffer.0"]

    for p, o in ((param, opt), (resumed_param, resumed)):     # one more identical step
        p.grad[:] = GRADS[2]
        o.step()
    np.testing.assert_array_equal(resumed_param.data, param.data)


@pytest.mark.parametrize("corrupt, message", [
    (lambda s: s.pop("momentum_buffer.0"), "missing.*momentum_buffer.0"),
    (lambda s: s.update({"momentum_buffer.7": np.zeros(3)}), "unexpected.*momentum_buffer.7"),
    (lambda s: s.update({"momentum_buffer.0": np.zeros(4)}), "momentum_buffer.0.*shape"),
    (lambda s: s.pop("lr"), "missing.*lr"),
])
def test_sgd_load_state_dict_is_strict(corrupt, message):
    _, opt = run_sgd(lr=0.1, momentum=0.9, weight_decay=0.0)
    state = opt.state_dict()
    corrupt(state)
    fresh = SGD([nn.Parameter(W0.copy())], lr=0.3, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        fresh.load_state_dict(state)
    assert fresh.lr == 0.3 and not fresh.momentum_buffers[0].any()


@pytest.mark.parametrize("kwargs", [dict(lr=-0.1), dict(lr=0.1, momentum=-1), dict(lr=0.1, weight_decay=float("nan"))])
def test_sgd_rejects_bad_hyper_parameters(kwargs):
    with pytest.raises(ValueError):
        SGD([nn.Parameter(W0.copy())], **kwargs)


def test_sgd_rejects_non_parameters():
    with pytest.raises(TypeError, match="Parameter"):
        SGD([W0], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)


# --------------------------------------------------------------------- StepLR
def test_steplr_halves_every_five_epochs():
    opt = SGD([nn.Parameter(W0.copy())], lr=0.1)
    scheduler = StepLR(opt, 5, 0.5)          # report 000
    assert scheduler.get_last_lr() == 0.1
    seen = []
    for _ in range(15):
        seen.append(opt.lr)                   # the rate used during this epoch
        scheduler.step()
        assert scheduler.get_last_lr() == opt.lr
    assert seen == [0.1] * 5 + [0.05] * 5 + [0.025] * 5
    assert opt.lr == 0.0125


def test_steplr_matches_torch():
    torch = pytest.importorskip("torch")
    opt = SGD([nn.Parameter(W0.copy())], lr=0.3)
    scheduler = StepLR(opt, 3, gamma=0.1)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    t_scheduler = torch.optim.lr_scheduler.StepLR(t_opt, 3, gamma=0.1)
    for _ in range(10):
        t_opt.step()
        scheduler.step()
        t_scheduler.step()
        assert opt.lr == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)
        assert scheduler.get_last_lr() == pytest.approx(t_scheduler.get_last_lr()[0], rel=1e-12)


def test_steplr_state_dict_round_trip():
    opt = SGD([nn.Parameter(W0.copy())], lr=0.1)
    scheduler = StepLR(opt, 5, 0.5)
    for _ in range(7):
        scheduler.step()
    state = {key: np.asarray(value) for key, value in scheduler.state_dict().items()}  # as np.load gives
    resumed_opt = SGD([nn.Parameter(W0.copy())], lr=0.1)
    resumed = StepLR(resumed_opt, 2, 0.9)
    resumed.load_state_dict(state)
    resumed_opt.load_state_dict(opt.state_dict())
    for _ in range(5):
        scheduler.step()
        resumed.step()
        assert resumed_opt.lr == opt.lr
    assert opt.lr == 0.1 * 0.5 ** 2
    with pytest.raises(ValueError, match="missing.*last_epoch"):
        resumed.load_state_dict({k: v for k, v in state.items() if k != "last_epoch"})


@pytest.mark.parametrize("step_size", [0, -1, 2.5])
def test_steplr_rejects_bad_step_size(step_size):
    with pytest.raises(ValueError, match="step_size"):
        StepLR(SGD([nn.Parameter(W0.copy())], lr=0.1), step_size)
