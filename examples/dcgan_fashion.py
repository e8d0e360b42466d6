"""Train the zoo's DCGAN pair on Fashion-MNIST and save generated samples.

The generator (`fastconv.models.dcgan_generator`: transposed convolutions, batch
norm, ReLU, Tanh) maps noise to 28x28 images in (-1, 1); the discriminator
(`dcgan_discriminator`: strided convolutions, LeakyReLU) scores images with one
logit.  Each step, as in the DCGAN paper (Adam, lr 2e-4, beta1 0.5):

1. discriminator: `BCEWithLogitsLoss` of real images against 1 and of generated
   ones against 0;
2. generator: the discriminator's loss of freshly generated images against 1 (the
   gradient flows back through the discriminator into the generator).

Writes ``samples.png`` (images generated from fixed noise, redrawn after each
epoch), ``generator.npz`` and ``discriminator.npz`` (`fastconv.load` rebuilds them).  Fashion-MNIST is looked up as everywhere in fastconv (``--data-root``,
``FASTCONV_DATA``, the cache, and ``../shared/data`` beside the checkout).

    python examples/dcgan_fashion.py                           # 1 epoch of 10,000 images
    python examples/dcgan_fashion.py --epochs 5 --limit 0      # the full training set
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastconv
from fastconv import models, nn
from fastconv.optim import Adam

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_images(data_root, limit: int | None, seed: int) -> np.ndarray:
    """Fashion-MNIST training images scaled to [-1, 1] (the generator's Tanh range);
    `DatasetNotFoundError` when the data set is not on disk."""
    from fastconv.data import load_dataset

    root = data_root if data_root is not None else (SHARED_DATA if SHARED_DATA.is_dir() else None)
    data = load_dataset("fashion-mnist", root=root, seed=seed, limit=limit)
    return data.train_x * 2.0 - 1.0


def gan_step(generator, discriminator, real, g_opt, d_opt, latent_dim: int, rng) -> tuple[float, float]:
    """One discriminator and one generator update; their losses."""
    loss_fn = nn.BCEWithLogitsLoss()
    n = len(real)
    ones, zeros = np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)
    noise = rng.standard_normal((n, latent_dim, 1, 1)).astype(np.float32)

    d_opt.zero_grad()
    d_loss = loss_fn(discriminator(real), ones)
    discriminator.backward(loss_fn.backward())
    fake = generator(noise)
    d_loss += loss_fn(discriminator(fake), zeros)
    discriminator.backward(loss_fn.backward())       # no generator backward: D's step only
    d_opt.step()

    g_opt.zero_grad()
    # the updated discriminator scores the same fakes; the generator's forward of
    # them is still the one its backward needs
    g_loss = loss_fn(discriminator(fake), ones)
    generator.backward(discriminator.backward(loss_fn.backward()))
    g_opt.step()            # the discriminator's gradients of this pass go at its next zero_grad
    return d_loss, g_loss


def save_samples(generator, noise: np.ndarray, path: Path) -> None:
    from matplotlib.figure import Figure

    # in training mode (batch statistics), as the DCGAN reference samples: early in
    # training the running statistics lag far behind the weights
    images = (generator(noise)[:, 0] + 1.0) / 2.0
    side = int(np.ceil(np.sqrt(len(images))))
    figure = Figure(figsize=(side, side))
    for index, image in enumerate(images):
        axis = figure.add_subplot(side, side, index + 1)
        axis.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
        axis.axis("off")
    figure.savefig(path, dpi=80)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the images")
    parser.add_argument("--limit", type=int, default=10_000, help="at most N training images (0: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="real images per step")
    parser.add_argument("--latent-dim", type=int, default=64, help="noise dimensions")
    parser.add_argument("--width", type=int, default=32, help="feature maps of the first layers")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both networks")
    parser.add_argument("--samples", type=int, default=16, help="images in samples.png")
    parser.add_argument("--seed", type=int, default=0, help="weights, noise and batches")
    parser.add_argument("--backend", default="numba", help="numba (JIT kernels) or numpy (reference)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder searched first for fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path("runs/dcgan_fashion"), help="output folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from fastconv.data import DatasetNotFoundError, batches

    try:
        images = load_images(args.data_root, args.limit or None, args.seed)
    except DatasetNotFoundError:
        print("dcgan_fashion: Fashion-MNIST is not on disk: put its four IDX files in --data-root, "
              "or set FASTCONV_DATA to a folder holding fashion-mnist/", file=sys.stderr)
        return 1
    fastconv.set_backend(args.backend)
    rng = np.random.default_rng(args.seed)
    generator = models.dcgan_generator(args.latent_dim, width=args.width, seed=args.seed)
    discriminator = models.dcgan_discriminator(width=args.width, seed=args.seed + 1)
    adam = dict(lr=args.lr, betas=(0.5, 0.999))
    g_opt, d_opt = Adam(generator.parameters(), **adam), Adam(discriminator.parameters(), **adam)
    fixed_noise = rng.standard_normal((args.samples, args.latent_dim, 1, 1)).astype(np.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    labels = np.zeros(len(images), dtype=np.int64)              # batches() wants labels
    for epoch in range(1, args.epochs + 1):
        started, d_losses, g_losses = time.perf_counter(), [], []
        for real, _ in batches(images, labels, args.batch_size, seed=1000 * args.seed + epoch):
            d_loss, g_loss = gan_step(generator, discriminator, real, g_opt, d_opt, args.latent_dim, rng)
            d_losses.append(d_loss)
            g_losses.append(g_loss)
        print(f"epoch {epoch}: {time.perf_counter() - started:.1f} s, discriminator loss "
              f"{np.mean(d_losses):.3f}, generator loss {np.mean(g_losses):.3f}", flush=True)
        save_samples(generator, fixed_noise, args.out / "samples.png")
    fastconv.save(generator, args.out / "generator.npz")
    fastconv.save(discriminator, args.out / "discriminator.npz")
    print(f"wrote {args.out / 'samples.png'}, generator.npz and discriminator.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
