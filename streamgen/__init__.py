"""streamgen: online deep generative models for anomaly scoring and forecasting on streams."""

__version__ = "0.1.0"
__all__ = ["__version__"]
