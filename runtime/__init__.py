"""rmpe.runtime."""
