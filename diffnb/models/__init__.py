"""The book's networks."""

from .classifier import Classifier
from .embeddings import sinusoidal_embedding
from .mlp import ToyMLP
from .unet import (Attention, BasicUNet, ConvNextBlock, Downsample, LinearAttention, PreNorm,
                   Residual, ResnetBlock, TimeEmbedding, UNet, Upsample)

__all__ = ["Classifier", "sinusoidal_embedding", "ToyMLP", "UNet", "BasicUNet", "TimeEmbedding", "ResnetBlock",
           "ConvNextBlock", "Attention", "LinearAttention", "PreNorm", "Residual", "Downsample",
           "Upsample"]
