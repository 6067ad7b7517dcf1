"""Repeat chapter 5's experiment over seeds and record what it measured.

    python tools/seeds.py [--profile full|quick] [--seeds 0 1 2] [--device auto|cpu|cuda|mps]

A book build runs each chapter with one seed, so chapter 5's headline comparison
(the plain against the shifted cosine schedule at the high resolution) rests on one
training run per schedule. This command executes the chapter once per seed with
papermill, exactly as the book build does (the chapter's own code, nothing copied),
reads back the values the chapter records, and writes them to
``diffnb/assets/seeds_05_simple_diffusion.json``, which the chapter shows. Results of
the other profile already in that file are kept. A full-profile seed takes about as
long as the chapter (9 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402  (tools/build.py: the book build's execute step)

NOTEBOOK = "05_simple_diffusion"
SEEDS_FILE = build.ROOT / "diffnb" / "assets" / f"seeds_{NOTEBOOK}.json"
# what the chapter records and the table shows, per seed
KEYS = ("train_steps", "high_size", "fd_floor", "fd_cosine_base", "fd_cosine_high",
        "fd_shifted_high", "fd_interpolated_high", "fd_resample_spread")


def row(executed: Path) -> dict:
    """The recorded ``KEYS`` of one executed copy of the chapter."""
    from diffnb.results import read_results

    found = read_results(executed)
    missing = [k for k in KEYS if k not in found]
    if missing:
        raise KeyError(f"{executed} does not record {missing}; the seed table needs {list(KEYS)}")
    return {k: found[k] for k in KEYS}


def merge(recorded: dict, profile: str, run: dict) -> dict:
    """``recorded`` (the file's contents, possibly empty) with ``profile``'s entry replaced by ``run``."""
    runs = dict(recorded.get("runs", {}))
    runs[profile] = run
    return {"notebook": NOTEBOOK, "keys": list(KEYS), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=("quick", "full"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=SEEDS_FILE)
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct non-negative integers, got {args.seeds}")

    import torch

    from diffnb.results import write_json

    [src] = build.notebooks([NOTEBOOK])
    seeds = {}
    for seed in args.seeds:
        out_dir = build.BUILD / "seeds" / args.profile / f"seed-{seed}"
        [executed] = build.execute([src], out_dir, profile=args.profile, device=args.device, seed=seed)
        times = json.loads((out_dir / build.TIMES).read_text())
        seeds[str(seed)] = {**row(executed), "chapter_seconds": times[NOTEBOOK]["seconds"]}
    run = dict(device=build.device_label(args.device), torch=torch.__version__,
               date=datetime.date.today().isoformat(),
               command=shlex.join(["python", "tools/seeds.py", *(argv if argv is not None else sys.argv[1:])]),
               seeds=seeds)
    recorded = json.loads(args.out.read_text()) if args.out.is_file() else {}
    write_json(args.out, merge(recorded, args.profile, run), indent=1)
    print(f"wrote {len(seeds)} seed(s) of the {args.profile} profile to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
