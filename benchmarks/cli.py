"""`rmpe-bench`: measurements that go into BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys

from rmpe.benchmarks import ap, hostile, latency, nms_bench, parity, pckh, pipeline, ray_throughput, soak, tracking


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmpe-bench",
        description="Benchmarks for rmpe. Each subcommand prints a Markdown table: nms gives ratios "
        "against a baseline in the same run, ap the COCO keypoint AP (PCKh@0.5 for MPII models) of exported "
        "models through rmpe-run, mpii converts MPII's annotations for it, "
        "soak the resident memory of a long run.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    nms_bench.add_parser(sub)
    ap.add_parser(sub)
    pckh.add_parser(sub)
    soak.add_parser(sub)
    hostile.add_parser(sub)
    tracking.add_parser(sub)
    ray_throughput.add_parser(sub)
    latency.add_parser(sub)
    parity.add_parser(sub)
    pipeline.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
