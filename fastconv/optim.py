"""Stochastic gradient descent and a step learning-rate schedule (PyTorch semantics).

    opt = SGD(model.parameters(), lr=0.1, momentum=1e-4, weight_decay=2e-4)
    sched = StepLR(opt, step_size=5, gamma=0.5)   # report 000: halve every 5 epochs
    for epoch in ...:
        for x, y in batches:
            opt.zero_grad(); loss_fn(model(x), y); model.backward(loss_fn.backward()); opt.step()
        sched.step()

State dicts are flat ``{str: float | ndarray}`` so they fit in an ``.npz`` checkpoint
next to the model's; loading accepts the 0-d arrays ``np.load`` gives back.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

import numpy as np

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
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got an empty parameter list")
        for index, param in enumerate(self.params):
            if not isinstance(param, Parameter):
                raise TypeError(f"params[{index}] is a {type(param).__name__}, not a Parameter")
        self.lr = _non_negative(lr, "lr")
        self.momentum = _non_negative(momentum, "momentum")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        # Zero buffers give the same first step as PyTorch's lazily cloned ones.
        self.momentum_buffers = (
            [np.zeros_like(param.data) for param in self.params] if self.momentum else None
        )

    def step(self) -> None:
        """Update every parameter from its ``.grad`` (which is left unchanged)."""
        lr, momentum, weight_decay = self.lr, self.momentum, self.weight_decay
        buffers = self.momentum_buffers
        for index, param in enumerate(self.params):
            grad = param.grad
            if weight_decay:
                grad = grad + weight_decay * param.data
            if buffers is not None:
                buffer = buffers[index]
                buffer *= momentum
                buffer += grad
                grad = buffer
            param.data -= lr * grad

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad.fill(0)

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
