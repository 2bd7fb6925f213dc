"""rmpe.export."""
