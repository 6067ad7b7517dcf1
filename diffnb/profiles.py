"""Run sizes for every chapter, in one place.

Two profiles:

* ``"quick"``: what CI runs on 2 CPU cores. Seconds per chapter, yet a real run
  whose metrics move the right way (they are checked by the tests).
* ``"full"``: what the rendered book shows and what Colab users run.

A notebook asks for its settings with ``settings("two_moons", profile)`` and
never hard-codes a size.
"""

from __future__ import annotations

from types import SimpleNamespace

PROFILE_NAMES = ("quick", "full")

PROFILES: dict[str, dict[str, dict]] = {
    "two_moons": {
        "quick": dict(
            train_steps=800,      # AdamW steps per model variant
            batch_size=256,
            lr=3e-3,
            n_eval=500,           # points per energy-distance draw
            n_draws=2,            # independent chunks of generated points per figure
            n_refs=3,             # fresh real draws each chunk is compared with
            n_floor_draws=6,      # chunks of real points for the floor (they cost nothing)
            mc_copies=20_000,     # Monte Carlo check of the closed form
        ),
        "full": dict(
            train_steps=5000,
            batch_size=512,
            lr=3e-3,
            n_eval=2000,
            n_draws=3,
            n_refs=5,
            n_floor_draws=10,
            mc_copies=100_000,
        ),
    },
    "forward_cat": {
        "quick": dict(
            image_size=64,        # the cat of every figure
            mc_size=16,           # side of the cat copies noised step by step
            mc_copies=64,         # copies in the Monte Carlo check of the closed form
            anim_frames=8,        # frames of the static animation
        ),
        "full": dict(
            image_size=128,
            mc_size=32,
            mc_copies=256,
            anim_frames=25,
        ),
    },
    "unet": {
        "quick": dict(
            attn_sizes=(8, 16, 32, 64),   # resolutions of the attention cost measurement
            repeat=3,                 # timed runs per measurement (median reported)
            denoise_steps=100,        # training steps of each network in the comparison
            batch_size=128,
        ),
        "full": dict(
            attn_sizes=(8, 16, 32, 64),
            repeat=5,
            denoise_steps=1000,
            batch_size=128,
        ),
    },
    "images": {
        "quick": dict(
            unet=dict(base=16, mults=(1, 2)),   # two levels: 8x8 digits allow few halvings
            T=100,                    # diffusion steps the model is trained with
            batch_size=128,
            lr=4e-3,
            train_steps=120,          # AdamW steps of the main model
            warmup=20,                # steps of linear learning-rate warm-up
            ema_decay=0.99,
            checkpoint_every=50,
            classifier_steps=100,     # the judge's training steps
            classifier_downsamples=2,  # the judge's halvings: features see 9x9 pixels
            n_samples=1000,           # generated images per Frechet distance (and per reference)
            ancestral_steps=20,       # steps of the chapter's ancestral sampler
            ddim_steps=(20, 5),       # the DDIM sweep (20 must be among them)
            trajectory_images=4,      # images followed through all T steps
            anim_frames=10,
            demo_steps=10,            # the interrupt-and-resume demonstration
            loss_steps=20,            # steps of each run in the loss comparison
            loss_sample_steps=5,      # DDIM steps of the samples that judge each loss
            fd_repeats=2,             # sample sets per ancestral distance (their mean) and per spread
            resample_draws=10,        # draws of training images with replacement (a reference)
        ),
        "full": dict(
            unet=dict(base=16, mults=(1, 2)),
            T=1000,
            batch_size=128,
            lr=4e-3,
            train_steps=2000,
            warmup=100,
            ema_decay=0.995,
            checkpoint_every=250,
            classifier_steps=500,
            classifier_downsamples=2,
            n_samples=1000,
            ancestral_steps=50,
            ddim_steps=(50, 20, 10),
            trajectory_images=8,
            anim_frames=25,
            demo_steps=20,
            loss_steps=120,
            loss_sample_steps=20,
            fd_repeats=6,
            resample_draws=20,
        ),
    },
    "simple": {
        "quick": dict(
            base_size=8,              # the digits' own resolution: the schedules' base
            high_size=16,             # the upsampled resolution of the experiment
            unet=dict(base=16, mults=(1, 2)),   # with patch = size / base_size
            batch_size=128,
            lr=4e-3,
            train_steps=100,          # AdamW steps of each run (equal for all runs)
            warmup=10,
            ema_decay=0.99,
            gamma=5.0,                # min-SNR cap
            sample_steps=10,          # DDIM steps of each run's samples
            n_samples=400,            # samples per Frechet distance (and per reference)
            sample_sets=2,            # sample sets per run: their spread sizes the distance's noise
            classifier_steps=100,
        ),
        "full": dict(
            base_size=8,
            high_size=32,
            unet=dict(base=16, mults=(1, 2)),
            batch_size=128,
            lr=4e-3,
            train_steps=800,
            warmup=50,
            ema_decay=0.995,
            gamma=5.0,
            sample_steps=50,
            n_samples=1000,
            sample_sets=2,
            classifier_steps=500,
        ),
    },
}

# Chapter 4 on images of 28 pixels and up (MNIST, the default on a GPU, and hub sets):
# there a digit spans more pixels than the 8x8 networks take in at once, so the UNet and
# the judge get a third level (28 -> 14 -> 7), and the judge trains longer.
PROFILES["images_large"] = {
    profile: {**PROFILES["images"][profile], **changes}
    for profile, changes in {
        "quick": dict(unet=dict(base=32, mults=(1, 2, 2)), classifier_downsamples=3, classifier_steps=300),
        "full": dict(unet=dict(base=32, mults=(1, 2, 2)), classifier_downsamples=3, classifier_steps=1000),
    }.items()
}


def settings(chapter: str, profile: str) -> SimpleNamespace:
    """The sizes of ``chapter`` under ``profile`` (``"quick"`` or ``"full"``), as attributes."""
    if chapter not in PROFILES:
        raise ValueError(f"unknown chapter {chapter!r}; known: {', '.join(map(repr, PROFILES))}")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(map(repr, PROFILE_NAMES))}")
    return SimpleNamespace(profile=profile, **PROFILES[chapter][profile])
