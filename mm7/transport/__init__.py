"""MM7 over HTTP with aiohttp: the client (VASP -> MMSC) and the inbound endpoint (MMSC -> VASP).

Builds on ``mm7.core`` only; usable as a library on its own.
"""
