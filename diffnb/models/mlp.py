"""A noise predictor for 2-D toy data."""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import sinusoidal_embedding

TIME_EMBEDDINGS = ("onehot", "sinusoidal")


class ToyMLP(nn.Module):
    """eps_theta(x_t, t) for points in R^d: an MLP on the concatenation [x_t, embedding(t)].

    The first layer acting on a concatenation is split in two, W [x; e] =
    W_x x + W_e e, so the time embedding's part can be computed cheaply:

    - ``"onehot"`` (as in the two-moons guide): e is the T-wide indicator of
      t, and W_e e is column t of W_e, an ``nn.Embedding`` lookup;
    - ``"sinusoidal"``: e holds ``emb_dim`` sinusoidal features of
      t * 1000 / T (so the features span the same range for any T).

    Shapes: x (B, data_dim), t (B,) integers in [0, T) -> (B, data_dim).
    """

    def __init__(self, T: int, time_embedding: str = "sinusoidal", *, data_dim: int = 2,
                 emb_dim: int = 64, hidden: int = 128, depth: int = 4):
        super().__init__()
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; "
                             f"allowed: {', '.join(map(repr, TIME_EMBEDDINGS))}")
        self.T, self.time_embedding, self.data_dim, self.emb_dim = T, time_embedding, data_dim, emb_dim
        self.x_in = nn.Linear(data_dim, hidden)
        if time_embedding == "onehot":
            self.t_in = nn.Embedding(T, hidden)
        else:
            self.t_in = nn.Linear(emb_dim, hidden, bias=False)
        layers = [nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, data_dim))
        self.net = nn.Sequential(*layers)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """W_e e(t), shape (B, hidden)."""
        if self.time_embedding == "onehot":
            return self.t_in(t)
        return self.t_in(sinusoidal_embedding(t * (1000.0 / self.T), self.emb_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (B, {self.data_dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        return self.net(self.x_in(x) + self.time_features(t))
