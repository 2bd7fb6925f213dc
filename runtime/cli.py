"""`rmpe-run`: run an exported model on images (not yet implemented)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rmpe-run", description="Run an exported rmpe model on images (not yet available).")
    parser.add_argument("model", help="model.onnx or a TensorRT engine")
    parser.add_argument("inputs", nargs="+", help="images, folders or globs")
    parser.parse_args(argv)
    print("rmpe-run: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
