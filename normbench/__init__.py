"""normbench: reproduce and extend the classic normalization papers' comparisons."""

__version__ = "0.1.0"
