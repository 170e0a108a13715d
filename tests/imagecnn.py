"""A tiny residual CNN with BatchNorm on 3x96x96 images, trained briefly on synthetic images.

    x, y = image_data(400)            # float32 [400, 3, 96, 96], int64 labels in 0..2
    model = residual_cnn()            # torch.nn.Module in eval mode, outputs logits [n, 3]

Each class is a bright square, at a random place, in one colour channel of a noisy image, so a few
steps reach high accuracy; the logits are raw scores with the wide margins of a trained classifier.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

CLASSES = 3
SIZE = 96


def image_data(rows: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, rows)
    x = rng.normal(0.0, 0.3, (rows, 3, size, size)).astype(np.float32)
    side = size // 3
    for i, label in enumerate(y):
        r0, c0 = rng.integers(0, size - side, 2)
        x[i, label, r0 : r0 + side, c0 : c0 + side] += 1.0
    return x, y.astype(np.int64)


@functools.cache
def residual_cnn(channels: int = 4, logit_scale: float = 4.0, seed: int = 0) -> Any:
    """Conv-BN-ReLU stem, two residual blocks (conv-BN-ReLU-conv-BN + skip), global average
    pool, linear. Fully convolutional, so it trains on 32x32 images (fast) and runs on any size;
    the last layer is scaled by ``logit_scale`` (a sharper, more confident classifier)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
            )  # fmt: skip

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(t) + t)

    c = channels
    model = nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        Block(c), nn.MaxPool2d(2), Block(c),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, CLASSES),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = image_data(192, seed=seed + 100, size=32)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(6):
        for i in range(0, len(xs), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xs[i : i + 32]), ys[i : i + 32]).backward()
            opt.step()
    with torch.no_grad():
        model[-1].weight *= logit_scale
        model[-1].bias *= logit_scale
    return model.eval()
