"""diffnb: the helper package of the diffusion-models book.

Each module holds one idea of the book; every chapter builds its piece in
plain PyTorch first, checks it equals the version here, then uses this one.
"""

import warnings

# `python -m diffnb.train` imports this package, and so diffnb.train, before running
# that module as __main__; runpy warns about the double import, which is harmless here
# (the command-line entry point keeps no state at module level).
warnings.filterwarnings("ignore", message="'diffnb.train' found in sys.modules", category=RuntimeWarning)

from . import continuous, data, ddpm, fast, metrics, models, schedules, viz  # noqa: E402
from .device import available_devices, get_device, seed_everything, synchronize  # noqa: E402
from .fast import FastModel, FastPath  # noqa: E402
from .metrics import energy_distance  # noqa: E402
from .profiles import settings  # noqa: E402
from .results import read_results, record  # noqa: E402
from .schedules import DiscreteSchedule, beta_schedule, log_snr_schedule  # noqa: E402
from .train import progress, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "available_devices", "get_device", "seed_everything", "synchronize", "settings", "record", "read_results",
    "DiscreteSchedule", "beta_schedule", "log_snr_schedule", "energy_distance", "progress", "train",
    "FastModel", "FastPath", "continuous", "data", "ddpm", "fast", "metrics", "models", "schedules", "viz",
]
