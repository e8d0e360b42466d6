"""SGD, Adam, AdamW and a step learning-rate schedule (PyTorch semantics).

    opt = SGD(model.parameters(), lr=0.1, momentum=1e-4, weight_decay=2e-4)
    sched = StepLR(opt, step_size=5, gamma=0.5)   # report 000: halve every 5 epochs
    for epoch in ...:
        for x, y in batches:
            opt.zero_grad(); loss_fn(model(x), y); model.backward(loss_fn.backward()); opt.step()
        sched.step()

State dicts are flat ``{str: float | ndarray}`` so they fit in an ``.npz`` checkpoint
next to the model's; loading accepts the 0-d arrays ``np.load`` gives back.
`make_optimizer` builds one by name (``fastconv train --optimizer``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Parameter, check_state_keys


def _non_negative(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


class SGD:
    """SGD with momentum and L2 weight decay, exactly as `torch.optim.SGD`
    (dampening 0, no Nesterov):

        g = grad + weight_decay * w;  buf = momentum * buf + g;  w -= lr * buf

    (``buf = g`` when ``momentum == 0``).  ``params`` is an iterable of `Parameter`;
    ``lr`` is a plain attribute that `StepLR` rewrites.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.params = _parameter_list(params, "SGD")
        self.lr = _non_negative(lr, "lr")
        self.momentum = _non_negative(momentum, "momentum")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        # Zero buffers give the same first step as PyTorch's lazily cloned ones.
        self.momentum_buffers = (
            [np.zeros_like(param.data) for param in self.params] if self.momentum else None
        )

    def step(self) -> None:
        """Update every parameter from its ``.grad`` (which is left unchanged)."""
        buffers = self.momentum_buffers
        for index, param in enumerate(self.params):
            buffer = buffers[index] if buffers is not None else None
            F.sgd_step(param.data, param.grad, buffer, self.lr, self.momentum, self.weight_decay)

    def zero_grad(self) -> None:
        for param in self.params:
            param.zero_grad()

    def _buffer_keys(self) -> list[str]:
        return [f"momentum_buffer.{index}" for index in range(len(self.params))] if self.momentum_buffers else []

    def state_dict(self) -> dict:
        """``lr``, ``momentum``, ``weight_decay`` and copies of the momentum buffers
        (``momentum_buffer.<i>``, in parameter order)."""
        state = {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay}
        for key, buffer in zip(self._buffer_keys(), self.momentum_buffers or []):
            state[key] = buffer.copy()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore hyper-parameters and buffers.  Strict: the momentum setting (whether
        buffers exist), the number of parameters and every buffer shape must match."""
        scalar_keys = ["lr", "momentum", "weight_decay"]
        momentum = _non_negative(float(np.asarray(state["momentum"])), "momentum") \
            if "momentum" in state else None
        buffer_keys = [f"momentum_buffer.{index}" for index in range(len(self.params))] \
            if momentum else []
        check_state_keys(state, scalar_keys + buffer_keys, "SGD")
        buffers = []
        for key, param in zip(buffer_keys, self.params):
            value = np.asarray(state[key])
            if value.shape != param.data.shape:
                raise ValueError(f"SGD state_dict[{key!r}] has shape {value.shape}, "
                                 f"expected {param.data.shape}")
            buffers.append(value.astype(param.data.dtype, copy=True))
        self.lr = _non_negative(float(np.asarray(state["lr"])), "lr")
        self.weight_decay = _non_negative(float(np.asarray(state["weight_decay"])), "weight_decay")
        self.momentum = momentum
        self.momentum_buffers = buffers or None


class Adam:
    """Adam, exactly as `torch.optim.Adam` (``amsgrad`` optional):

        g = grad + weight_decay * w                      (L2, added to the gradient)
        m = m + (1 - beta1) * (g - m);   v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) with amsgrad, else v
        w -= lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    at step ``t`` (counted from 1).  State is kept in each parameter's dtype.
    """

    _decoupled_weight_decay = False     # AdamW: w *= 1 - lr * weight_decay instead

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        owner = type(self).__name__
        self.params = _parameter_list(params, owner)
        self.lr = _non_negative(lr, "lr")
        self.betas = _betas(betas)
        self.eps = _non_negative(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.amsgrad = bool(amsgrad)
        self.steps = 0
        # Zero moments give the same first step as PyTorch's lazily created state.
        self.exp_avg = [np.zeros_like(param.data) for param in self.params]
        self.exp_avg_sq = [np.zeros_like(param.data) for param in self.params]
        self.max_exp_avg_sq = [np.zeros_like(param.data) for param in self.params] if self.amsgrad else None

    def step(self) -> None:
        """Update every parameter from its ``.grad`` (which is left unchanged)."""
        self.steps += 1
        (beta1, beta2), lr, weight_decay = self.betas, self.lr, self.weight_decay
        step_size = lr / (1 - beta1 ** self.steps)
        bias_correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        for index, param in enumerate(self.params):
            grad = param.grad
            if weight_decay and self._decoupled_weight_decay:
                param.data *= 1 - lr * weight_decay
            elif weight_decay:
                grad = grad + weight_decay * param.data
            exp_avg, exp_avg_sq = self.exp_avg[index], self.exp_avg_sq[index]
            exp_avg += (1 - beta1) * (grad - exp_avg)          # torch's lerp_
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            if self.amsgrad:
                second = np.maximum(self.max_exp_avg_sq[index], exp_avg_sq, out=self.max_exp_avg_sq[index])
            else:
                second = exp_avg_sq
            denom = np.sqrt(second) / bias_correction2_sqrt + self.eps
            param.data += (-step_size * exp_avg) / denom

    def zero_grad(self) -> None:
        for param in self.params:
            param.zero_grad()

    def _state_keys(self, amsgrad: bool) -> list[str]:
        names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if amsgrad else [])
        return [f"{name}.{index}" for name in names for index in range(len(self.params))]

    def state_dict(self) -> dict:
        """Hyper-parameters, ``step`` and copies of the moments (``exp_avg.<i>``,
        ``exp_avg_sq.<i>``, with amsgrad ``max_exp_avg_sq.<i>``; parameter order)."""
        state = {"lr": self.lr, "beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                 "weight_decay": self.weight_decay, "amsgrad": self.amsgrad, "step": self.steps}
        for key in self._state_keys(self.amsgrad):
            name, index = key.rsplit(".", 1)
            state[key] = getattr(self, name)[int(index)].copy()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore hyper-parameters, step and moments.  Strict: keys (which depend on
        ``amsgrad``), the number of parameters and every shape must match."""
        owner = type(self).__name__
        amsgrad = bool(np.asarray(state["amsgrad"])) if "amsgrad" in state else False
        scalars = ["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "step"]
        check_state_keys(state, scalars + self._state_keys(amsgrad), owner)
        moments = {}
        for key in self._state_keys(amsgrad):
            param = self.params[int(key.rsplit(".", 1)[1])]
            value = np.asarray(state[key])
            if value.shape != param.data.shape:
                raise ValueError(f"{owner} state_dict[{key!r}] has shape {value.shape}, "
                                 f"expected {param.data.shape}")
            moments[key] = value.astype(param.data.dtype, copy=True)
        steps = int(np.asarray(state["step"]))
        if steps < 0:
            raise ValueError(f"{owner} state_dict step must be non-negative, got {steps}")
        # everything checked before anything is assigned: a bad state changes nothing
        hyper = (_non_negative(float(np.asarray(state["lr"])), "lr"),
                 _betas((float(np.asarray(state["beta1"])), float(np.asarray(state["beta2"])))),
                 _non_negative(float(np.asarray(state["eps"])), "eps"),
                 _non_negative(float(np.asarray(state["weight_decay"])), "weight_decay"))
        self.lr, self.betas, self.eps, self.weight_decay = hyper
        self.amsgrad, self.steps = amsgrad, steps
        count = len(self.params)
        values = list(moments.values())
        self.exp_avg, self.exp_avg_sq = values[:count], values[count:2 * count]
        self.max_exp_avg_sq = values[2 * count:] if amsgrad else None


class AdamW(Adam):
    """AdamW, exactly as `torch.optim.AdamW`: Adam with decoupled weight decay
    (``w *= 1 - lr * weight_decay`` before the update, nothing added to the
    gradient), default ``weight_decay=0.01``."""

    _decoupled_weight_decay = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def _parameter_list(params, owner: str) -> list[Parameter]:
    params = list(params)
    if not params:
        raise ValueError(f"{owner} got an empty parameter list: assign layers and Parameters as "
                         "attributes of your Module (self.conv = nn.Conv2d(...)) or register them")
    for index, param in enumerate(params):
        if not isinstance(param, Parameter):
            raise TypeError(f"params[{index}] is a {type(param).__name__}, not a Parameter")
    return params


def _betas(betas) -> tuple[float, float]:
    try:
        beta1, beta2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    return beta1, beta2


OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3}
"""Learning rate `fastconv train` uses for Adam/AdamW when none is given (the SGD
defaults, 0.05-0.1, are far too large for them)."""


def make_optimizer(name: str, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0):
    """``sgd``: `SGD` (lr, momentum, weight_decay); ``adam`` / ``adamw``: `Adam` /
    `AdamW` with PyTorch's default betas and eps (``momentum`` is not used; their
    ``weight_decay`` is L2 / decoupled as each applies it)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


class StepLR:
    """Multiply the optimiser's learning rate by ``gamma`` every ``step_size`` epochs.

    Call ``step()`` once per epoch, after that epoch's optimiser steps; after ``e``
    calls the rate is ``base_lr * gamma ** (e // step_size)``, as `torch.optim.lr_scheduler.StepLR`.
    """

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1):
        if not isinstance(step_size, numbers.Integral) or isinstance(step_size, bool) or step_size < 1:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = _non_negative(gamma, "gamma")
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def step(self) -> None:
        """Advance one epoch and set the optimiser's ``lr`` accordingly."""
        self.last_epoch += 1
        self.optimizer.lr = self._lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        """The learning rate the schedule last set (a float: `SGD` has a single rate,
        where PyTorch returns a list with one entry per parameter group)."""
        return self._lr_at(self.last_epoch)

    def state_dict(self) -> dict:
        return {"step_size": self.step_size, "gamma": self.gamma,
                "base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the schedule; like PyTorch this leaves the optimiser's ``lr`` alone
        (it is in the optimiser's own state_dict)."""
        check_state_keys(state, ["step_size", "gamma", "base_lr", "last_epoch"], "StepLR")
        step_size = int(np.asarray(state["step_size"]))
        if step_size < 1:
            raise ValueError(f"StepLR state_dict step_size must be positive, got {step_size}")
        self.step_size = step_size
        self.gamma = _non_negative(float(np.asarray(state["gamma"])), "gamma")
        self.base_lr = _non_negative(float(np.asarray(state["base_lr"])), "base_lr")
        self.last_epoch = int(np.asarray(state["last_epoch"]))
