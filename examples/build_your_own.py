"""Build your own network, PyTorch style: a small ResNet written by hand, trained,
saved and loaded again.

The model is a `fastconv.nn.Module` subclass whose layers are attributes (which
registers them, as in PyTorch), with a hand-written residual block.  fastconv's
backprop is manual: each module's ``forward`` keeps what its ``backward`` needs, and
``backward(grad_y)`` returns the gradient with respect to its input, so each class
below writes both.  docs/guide/build-your-own-network.md walks through this file.

    python examples/build_your_own.py                          # digits, 200 steps
    python examples/build_your_own.py --dataset fashion-mnist --steps 1000
    python examples/build_your_own.py --dataset random --steps 3 --width 4 --backend numpy
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastconv
from fastconv import nn
from fastconv.optim import SGD


class ResidualBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is the
    identity, or a strided 1x1 convolution with batch norm when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, rng):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False, rng=rng),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu2(out + skip)

    def backward(self, grad_y):
        grad_sum = self.relu2.backward(grad_y)      # the gradient of out + skip reaches both
        grad_x = self.conv1.backward(self.bn1.backward(self.relu1.backward(
            self.conv2.backward(self.bn2.backward(grad_sum)))))
        grad_skip = grad_sum if self.shortcut is None else self.shortcut.backward(grad_sum)
        return grad_x + grad_skip


class SmallResNet(nn.Module):
    """A stem convolution, three residual stages (``width``, 2x and 4x channels, the
    last two halving the resolution), global average pooling, a linear classifier."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 1, seed: int = 0):
        super().__init__()
        rng = nn.as_generator(seed)
        # input_grad=False: the images' gradient is never needed, so skip computing it
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False, input_grad=False, rng=rng)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_relu = nn.ReLU()
        self.blocks = nn.ModuleList()
        channels = width
        for stage, stride in enumerate((1, 2, 2)):
            self.blocks.append(ResidualBlock(channels, width * 2 ** stage, stride, rng))
            channels = width * 2 ** stage
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes, rng=rng)

    def forward(self, x):
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.fc(self.flatten(self.pool(x)))

    def backward(self, grad_y):
        grad = self.pool.backward(self.flatten.backward(self.fc.backward(grad_y)))
        for block in reversed(self.blocks):      # backward visits the layers in reverse
            grad = block.backward(grad)
        return self.stem.backward(self.stem_bn.backward(self.stem_relu.backward(grad)))


def load_data(name: str, limit: int, seed: int):
    """(train_x, train_y, test_x, test_y, number of classes) as float32 in [0, 1]."""
    if name == "random":           # noise with learnable labels: no data set needed
        rng = np.random.default_rng(seed)
        x = rng.random((2 * limit, 1, 28, 28), dtype=np.float32)
        y = (x[:, 0, :14].mean(axis=(1, 2)) > x[:, 0, 14:].mean(axis=(1, 2))).astype(np.int64)
        return x[:limit], y[:limit], x[limit:], y[limit:], 2
    from fastconv.data import load_dataset

    data = load_dataset(name, seed=seed, limit=limit)
    return data.train_x, data.train_y, data.test_x, data.test_y, len(data.classes)


def accuracy(model, x, y, batch_size: int = 256) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    model.train()
    return correct / len(x)


def train(model, train_x, train_y, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """``steps`` SGD steps on shuffled mini-batches; the losses."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        batch = rng.choice(len(train_x), size=min(batch_size, len(train_x)), replace=False)
        optimizer.zero_grad()
        losses.append(loss_fn(model(train_x[batch]), train_y[batch]))
        model.backward(loss_fn.backward())
        optimizer.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"step {step + 1:5d}/{steps}: loss {losses[-1]:.4f}", flush=True)
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="digits",
                        help="digits (offline), mnist, fashion-mnist, letters, or random (synthetic)")
    parser.add_argument("--steps", type=int, default=200, help="SGD steps")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate")
    parser.add_argument("--limit", type=int, default=2000, help="at most N train and N test images")
    parser.add_argument("--seed", type=int, default=0, help="weights, batches and data subset")
    parser.add_argument("--backend", default="numba", help="numba (JIT kernels) or numpy (reference)")
    parser.add_argument("--out", type=Path, default=Path("runs/build_your_own"), help="output folder")
    args = parser.parse_args(argv)

    fastconv.set_backend(args.backend)
    train_x, train_y, test_x, test_y, num_classes = load_data(args.dataset, args.limit, args.seed)
    model = SmallResNet(num_classes, width=args.width, in_channels=train_x.shape[1], seed=args.seed)
    print(f"{args.dataset}: {len(train_x)} train / {len(test_x)} test images; "
          f"{model.num_parameters():,} parameters")
    started = time.perf_counter()
    train(model, train_x, train_y, args.steps, args.batch_size, args.lr, args.seed)
    print(f"trained in {time.perf_counter() - started:.1f} s; test accuracy {accuracy(model, test_x, test_y):.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = fastconv.save(model, args.out / "model.npz")
    # SmallResNet is our own class: the file holds its weights, and loading fills a
    # model built the same way (fastconv.load(path) alone would say so).
    restored = fastconv.load(path, model=SmallResNet(num_classes, width=args.width,
                                                     in_channels=train_x.shape[1]))
    model.eval()
    restored.eval()
    same = np.array_equal(model(test_x[:8]), restored(test_x[:8]))
    print(f"saved {path}; reloaded model gives {'the same' if same else 'DIFFERENT'} outputs")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
