"""Multimedia content: parts, SMIL presentations, carrier profiles and fitting (sans-I/O).

Builds on ``mm7.core`` only: the result of building is a ``mm7.core.mime.Part`` that the codec puts
under ``<Content href="cid:...">``.
"""
