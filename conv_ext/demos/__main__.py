"""python -m conv_ext.demos {pattern,fit,train,all} --out DIR [--device cpu|cuda] [--seed N]"""
import argparse
import importlib
import os
import sys
import time

import torch

from . import DEMOS
from .figures import compressed_copy

# The figures the README shows (make the copies with --docs docs).
README_FIGURES = {
    "pattern_feature_maps.png", "pattern_detection.png", "pattern_noise_sweep.png",
    "fit_curves.png", "fit_weights.png", "train_curves.png", "train_filters.png",
}


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m conv_ext.demos",
        description="Demos that teach convolution with conv_ext's kernels; each writes PNGs and "
                    "one HTML page into --out and prints a one-line summary.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="folder for the figures (created if missing)")
    common.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads for torch (default 1; 0 keeps torch's default). The demos' "
             "convolutions are tiny: on them a second thread costs more in synchronisation than "
             "it saves, and on a busy machine waiting threads slow them many times over")
    common.add_argument(
        "--docs", metavar="DIR",
        help="also write the README's figures, palette-compressed, as DIR/demo_<name>.png")
    demos = parser.add_subparsers(dest="demo", required=True, metavar="{pattern,fit,train,all}")
    demos.add_parser("pattern", parents=[common], help="lines in a noisy image, found by 3x3 kernels")
    fit = demos.add_parser("fit", parents=[common], help="SGD learns a 3x3 filter")
    fit.add_argument("--steps", type=int, default=1000)
    fit.add_argument("--lr", type=float, default=0.01, help="the lesson's 0.01 (try 0.2)")
    fit.add_argument("--momentum", type=float, default=0.01)
    train = demos.add_parser("train", parents=[common], help="a CNN on digits, nn.Conv2d vs MyConv2d")
    train.add_argument("--epochs", type=int, default=10)
    demos.add_parser("all", parents=[common], help="the three demos, with their defaults")
    return parser.parse_args(argv)


def options(args, demo):
    """The keyword arguments of `demo`'s run() that the command line set."""
    extra = {"fit": ("steps", "lr", "momentum"), "train": ("epochs",)}.get(demo, ())
    return {name: getattr(args, name) for name in extra if args.demo == demo}


def main(argv=None):
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine")
    if args.threads < 0:
        sys.exit(f"--threads: expected 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    for demo in DEMOS if args.demo == "all" else (args.demo,):
        module = importlib.import_module(f"conv_ext.demos.{demo}")
        result = module.run(args.out, device=args.device, seed=args.seed, **options(args, demo))
        print(result.summary(), flush=True)
        if args.docs:
            for path in result.files:
                if os.path.basename(path) in README_FIGURES:
                    compressed_copy(path, args.docs)
    print(f"figures in {os.path.abspath(args.out)} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
