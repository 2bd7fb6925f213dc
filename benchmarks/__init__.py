"""rmpe.benchmarks."""
