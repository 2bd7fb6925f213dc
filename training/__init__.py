"""rmpe.training."""
