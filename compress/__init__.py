"""compress-bench: train, compress, measure and gate neural networks in PyTorch."""

__version__ = "0.1.0"
