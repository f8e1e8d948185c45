"""batchstyle: distributed batch neural style transfer."""

__version__ = "0.1.0"
