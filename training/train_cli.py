"""`rmpe-train`: train the STN + stacked hourglass on a keypoints data set (RMPE recipe, CPU)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from rmpe.export.checkpoint import BUNDLED_DIR, BUNDLED_NAME, config_path_for
from rmpe.export.cli import parse_size
from rmpe.export.config import ModelConfig
from rmpe.export.graph import HEATMAP_KINDS

EPILOG = """examples:
  rmpe-data synth --out data/train --images 4000 --seed 1 --workers 2
  rmpe-data pgpg --keypoints data/train/person_keypoints.json --detections data/train/detections.json --out data/pgpg.npz
  rmpe-train --data data/train --pgpg data/pgpg.npz --out runs/default --minutes 55 --batch 8 --stn-fraction 0.1
  rmpe-train --data data/train --out runs/default --minutes 55 --resume      # continue after a stop

After a minute it prints its step rate and the steps the budget will make; training the bundled
architecture, it also says how much slower this machine is than the one that made the bundled
model (fewer steps in the hour score lower AP).

The run folder gets last.pt (resumable state, saved every few minutes) and, at the end,
model.safetensors + model.json, which `rmpe-export --checkpoint` takes. --bundle also copies
them over the package's default model (rmpe/models/default.*).
"""


def train_default(name: str) -> object:
    """A TrainConfig field's default, so the flags and the config cannot disagree."""
    from rmpe.training.train import TrainConfig

    return next(f.default for f in fields(TrainConfig) if f.name == name)


ARCHITECTURE_KEYS = ("stacks", "channels", "depth", "stem", "heatmap", "input_size", "stn", "stn_channels")


def comparable_bundled(model: ModelConfig, batch: int) -> ModelConfig | None:
    """The bundled model's config when this run trains its architecture at the default batch and its run is recorded."""
    path = BUNDLED_DIR / f"{BUNDLED_NAME}.json"
    if batch != train_default("batch") or not path.is_file():
        return None
    bundled = ModelConfig.load(path)
    same = all(getattr(bundled, key) == getattr(model, key) for key in ARCHITECTURE_KEYS)
    return bundled if same and bundled.train_steps else None


def build_parser() -> argparse.ArgumentParser:
    from rmpe.training.train import PRECISIONS

    p = argparse.ArgumentParser(prog="rmpe-train", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="data set folder: images/ and person_keypoints.json")
    p.add_argument("--pgpg", type=Path, help="PGPG model (.npz from `rmpe-data pgpg`); without it, jittered ground-truth boxes")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", type=Path, help="model config JSON (default: the built-in default architecture)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW", help="SPPE crop size")
    p.add_argument("--heatmap", choices=HEATMAP_KINDS, help="gaussian: unit-peak heatmaps trained with weighted MSE (the default, "
                   "the paper's); softmax: logits trained with cross-entropy plus MSE, far ahead in the first minutes, "
                   "level after the hour (docs/training.md)")
    p.add_argument("--minutes", type=float, default=train_default("minutes"), help="wall-clock training budget (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=train_default("max_steps"), help="stop after this many steps (0: only the time budget)")
    p.add_argument("--batch", type=int, default=train_default("batch"), help="crops per step (default: %(default)s; on CPU more, smaller steps learn faster)")
    p.add_argument("--lr", type=float, default=train_default("lr"), help="Adam peak learning rate (default: %(default)s)")
    p.add_argument("--sigma", type=float, default=train_default("sigma"), help="target Gaussian's σ in heatmap cells (default: %(default)s)")
    p.add_argument("--stn-fraction", type=float, default=train_default("stn_fraction"), help="share of the budget for phase 2 (STN + parallel SPPE)")
    p.add_argument("--device", default=train_default("device"), help="torch device, e.g. cuda (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default=train_default("precision"),
                   help="SPPE arithmetic while training: bf16 autocast is ~30%% faster on CPUs with native bf16 "
                   "(AVX512-BF16/AMX); auto picks it there (default: %(default)s). Weights stay fp32.")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=train_default("seed"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--bundle", action="store_true", help="copy the result over the bundled default model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rmpe.training.train import TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = ModelConfig.load(args.config) if args.config else ModelConfig()
        if args.input_size:
            model = replace(model, input_size=args.input_size)
        if args.heatmap:
            model = replace(model, heatmap=args.heatmap)
        bundled = comparable_bundled(model, args.batch)
        cfg = TrainConfig(data=args.data, out=args.out, pgpg=args.pgpg, model=model, batch=args.batch, minutes=args.minutes,
                          max_steps=args.max_steps, lr=args.lr, sigma=args.sigma, stn_fraction=args.stn_fraction, seed=args.seed,
                          device=args.device, precision=args.precision,
                          reference_step_s=bundled.train_step_seconds if bundled else 0.0,
                          resume=args.resume, progress=not args.quiet)
        trainer = Trainer(cfg)
    except (OSError, ValueError, KeyError) as exc:
        print(f"rmpe-train: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    losses = trainer.run()
    path = trainer.save_model()
    head = sum(losses[:20]) / max(1, len(losses[:20]))
    tail = sum(losses[-20:]) / max(1, len(losses[-20:]))
    print(f"trained {trainer.step} steps in {(time.monotonic() - start) / 60:.1f} min this run; loss {head:.3f} → {tail:.3f}; wrote {path}")
    if args.bundle:
        if bundled is not None and trainer.step < bundled.train_steps:
            print(f"rmpe-train: warning: the bundled model made {bundled.train_steps:,} steps and this one {trainer.step:,}; "
                  "replacing it anyway (git checkout rmpe/models restores it)", file=sys.stderr)
        BUNDLED_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, BUNDLED_DIR / f"{BUNDLED_NAME}.safetensors")
        shutil.copyfile(config_path_for(path), BUNDLED_DIR / f"{BUNDLED_NAME}.json")
        print(f"bundled as {BUNDLED_DIR / BUNDLED_NAME}.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
