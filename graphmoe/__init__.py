"""graphmoe: mixture-of-experts learning on graphs (a PyTorch Geometric extension)."""
__version__ = "0.1.0"
