"""Code the test modules share (test modules never import one another; shared fixtures are in
tests/conftest.py).

- ``api``: the sending API on loopback with its store, its config writer and schema check.
- ``fake_mmsc``: scripted fake MMSCs for the client tests.
- ``inbound``: the inbound MM7 endpoint on loopback, a recorder of handler calls, a poster.
- ``media``: media bytes made at test time (images, audio, ISO media, vCard).
- ``runtime``: the whole gateway from a TOML file, in process or as `mm7 serve`.
- ``samples``: MM7 messages of every operation and version, with every element set.
- ``simulator``: the MMSC simulator on loopback with a small VASP receiving its reports.
- ``tls_ca``: a throw-away certificate authority for the TLS tests.
"""
