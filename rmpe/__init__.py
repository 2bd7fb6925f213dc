"""rmpe: export and deploy RMPE multi-person pose estimation."""

__version__ = "0.1.0"
