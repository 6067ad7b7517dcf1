"""diffnb: the helper package of the diffusion-models book.

Each module holds one idea of the book; every chapter builds its piece in
plain PyTorch first, checks it equals the version here, then uses this one.
"""

from . import continuous, data, ddpm, metrics, models, schedules, viz
from .device import available_devices, get_device, seed_everything, synchronize
from .metrics import energy_distance
from .profiles import settings
from .results import read_results, record
from .schedules import DiscreteSchedule, beta_schedule, log_snr_schedule
from .train import progress, train

__version__ = "0.1.0"

__all__ = [
    "available_devices", "get_device", "seed_everything", "synchronize", "settings", "record", "read_results",
    "DiscreteSchedule", "beta_schedule", "log_snr_schedule", "energy_distance", "progress", "train",
    "continuous", "data", "ddpm", "metrics", "models", "schedules", "viz",
]
