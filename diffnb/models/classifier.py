"""A small convolutional classifier, the book's offline judge of generated images."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> class logits (B, n_classes).

    A 3x3 convolution, then ``downsamples`` 3x3 convolutions that each halve the
    resolution, global average pooling and a linear layer. ``features(x)`` returns the
    pooled activations (B, width * 2), the penultimate layer in which the book measures
    Frechet distances. Each feature sees a 9x9 square of pixels with the default two
    halvings (all of an 8x8 digit), 17x17 with three (enough for a 28x28 MNIST digit).
    Global pooling makes it work at any input size from 4 pixels up.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 32, downsamples: int = 2):
        super().__init__()
        if isinstance(downsamples, bool) or not isinstance(downsamples, int) or downsamples < 1:
            raise ValueError(f"downsamples must be a positive integer, got {downsamples!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8 (its GroupNorm has 8 groups), got {width!r}")
        layers = [nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
        channels = width
        for _ in range(downsamples):
            layers += [nn.Conv2d(channels, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU()]
            channels = 2 * width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.body[0].in_channels:
            raise ValueError(f"x must have shape (B, {self.body[0].in_channels}, H, W), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
