"""mm7: a 3GPP MM7 (TS 23.140) gateway connector.

Layers, imports downward only:
``mm7.core`` (sans-I/O codec) <- ``mm7.transport`` <- ``mm7.service`` <- ``mm7.cli``.
"""

__version__ = "0.1.0"
