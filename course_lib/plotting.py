"""Figures: image grids and training curves, each with a title and labelled axes."""

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch


def image_grid(images, nrow=8, levels=2, pad=1):
    """Tile images (N, C, H, W) of integer levels into one array (rows*(H+pad), nrow*(W+pad)[, 3]) in [0, 1]."""
    images = torch.as_tensor(images).float().cpu() / (levels - 1)
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5)
    for k in range(n):
        r, q = divmod(k, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = images[
            k
        ]
    grid = grid.permute(1, 2, 0).numpy()
    return grid[..., 0] if c == 1 else grid


def show_grid(images, title, nrow=8, levels=2, ax=None, xlabel="image", ylabel="image"):
    """Draw an image grid on `ax` (a new figure if None) with a title and axis labels; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, 1.0 * nrow + 1), 1.0 * ((len(images) + nrow - 1) // nrow) + 1))
    ax.imshow(image_grid(images, nrow, levels), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def save_grid(images, path, title, nrow=8, levels=2, xlabel="image", ylabel="image"):
    """Save an image grid as a PNG with a title and axis labels."""
    ax = show_grid(images, title, nrow, levels, xlabel=xlabel, ylabel=ylabel)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)
    return path


def plot_history(history, dims=None, ax=None, title="Learning curves"):
    """Train and test NLL per epoch (bits/dim when `dims` = C*H*W is given, else nats/image)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    scale = 1 / (dims * np.log(2)) if dims else 1.0
    unit = "bits/dim" if dims else "nats/image"
    ax.plot(history["epoch"], np.array(history["train_nats"]) * scale, "o-", label="train")
    test = [t for t in history["test_nats"] if t is not None]
    if test:
        ax.plot(history["epoch"][-len(test) :], np.array(test) * scale, "s-", label="test")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"negative log-likelihood ({unit})")
    ax.legend()
    return ax
