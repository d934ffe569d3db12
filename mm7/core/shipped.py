"""Where the configuration that ships with mm7 lives: named dialects, content profiles,
simulator personas and the starter gateway.toml, inside the package (``mm7/conf``), so that an
installed wheel finds them as a checkout does. A deployment's own ``conf/`` folder adds to them
and overrides them by name; ``mm7 init DIR`` writes a starter folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SHIPPED_CONF", "shipped"]

#: the package's conf folder (dialects.toml, gateway.toml, profiles/, personas/)
SHIPPED_CONF = Path(str(files("mm7").joinpath("conf")))


def shipped(*parts: str) -> Path:
    """A path inside the shipped conf folder: ``shipped("profiles")``."""
    return SHIPPED_CONF.joinpath(*parts)
