"""Draw docs/img/architecture.png, the picture of fastconv's layers in the README and
on the documentation site's home page:  python docs/img/architecture.py"""

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

BOXES = [
    # (x, y, width, height, title, text, colour)
    (0.02, 0.78, 0.96, 0.17, "command line",
     "fastconv train | bench | compare | viz | info      examples/*.py", "#e8eaf6"),
    (0.02, 0.50, 0.47, 0.24, "CNN framework (manual backprop)",
     "fastconv.nn: Conv2d, ConvTranspose2d, BatchNorm2d,\nMaxPool2d, Residual, Dropout, Linear, losses\n"
     "fastconv.optim: SGD, Adam, AdamW, StepLR\nfastconv.models: the reports' networks", "#e3f2fd"),
    (0.51, 0.50, 0.47, 0.24, "around it",
     "fastconv.data: MNIST, Fashion-MNIST, digits, letters, folders\nfastconv.train: logs, Ctrl-C, resume, "
     "MPI ranks\nfastconv.checkpoint: atomic .npz, no pickle\nfastconv.viz / benchmark: figures, timings",
     "#e3f2fd"),
    (0.02, 0.30, 0.96, 0.16, "fastconv.functional: one validated kernel interface (NCHW, PyTorch semantics)",
     "im2col  col2im  conv2d(+backward)  conv_transpose2d  pooling  batch_norm  linear  softmax_cross_entropy",
     "#fff3e0"),
    (0.02, 0.03, 0.30, 0.23, "numpy backend",
     "the reports' algorithms:\nindex-array im2col, np.add.at,\nim2col + matmul, reshape pooling\n"
     "(the reference, readable)", "#f1f8e9"),
    (0.35, 0.03, 0.40, 0.23, "numba backend",
     "JIT-compiled, cached on disk, parallel:\ndirect | gemm | shifted | shifted_rows |\nwinograd | blocked "
     "(SIMD registers)\nautotuned per layer shape, own BLAS", "#e8f5e9"),
    (0.78, 0.03, 0.20, 0.23, "torch backend",
     "optional adapter,\nthe benchmarks'\nanchor", "#f5f5f5"),
]


def draw(path: Path) -> Path:
    fig = Figure(figsize=(9.0, 4.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for x, y, w, h, title, text, colour in BOXES:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.004,rounding_size=0.012",
                                    facecolor=colour, edgecolor="#455a64", linewidth=1.0))
        ax.text(x + 0.012, y + h - 0.03, title, fontsize=9.5, fontweight="bold", va="top")
        ax.text(x + 0.012, y + h - 0.085, text, fontsize=8, va="top", family="monospace"
                if "|" in text and "\n" not in text else None, linespacing=1.35)
    for x in (0.17, 0.55, 0.88):   # functional -> each backend
        ax.annotate("", xy=(x, 0.265), xytext=(x, 0.30),
                    arrowprops=dict(arrowstyle="->", color="#455a64", lw=1.2))
    for x in (0.25, 0.75):         # framework -> functional
        ax.annotate("", xy=(x, 0.46), xytext=(x, 0.50),
                    arrowprops=dict(arrowstyle="->", color="#455a64", lw=1.2))
    ax.annotate("", xy=(0.5, 0.74), xytext=(0.5, 0.78), arrowprops=dict(arrowstyle="->", color="#455a64", lw=1.2))
    ax.text(0.195, 0.283, "chosen by FASTCONV_BACKEND / fastconv.set_backend", fontsize=7.5, ha="left", va="center",
            style="italic", color="#37474f")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    print(draw(Path(__file__).with_name("architecture.png")))
