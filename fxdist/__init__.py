"""fxdist: learn audio effects from clean/processed pairs, at cluster scale."""

__version__ = "0.1.0"
