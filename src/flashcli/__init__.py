"""flash: few-shot action animation (FLASH, arXiv 2503.00276)."""

__version__ = "0.1.0"
