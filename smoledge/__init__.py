"""smoledge: from raw text to a small language model running on a laptop or an ARM board."""

__version__ = "0.1.0"
