"""transfer-bench: measure transfer learning against a matched from-scratch baseline."""

__version__ = "0.1.0"
