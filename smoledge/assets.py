"""Where the repository's data folders (devices/, serving/) are, in a checkout or a wheel.

A source checkout has them next to the package; a wheel carries copies
under smoledge/_assets/ (hatch force-include in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """The `devices` or `serving` folder; the checkout's copy wins over the wheel's."""
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE / "_assets" / name
