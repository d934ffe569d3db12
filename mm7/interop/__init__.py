"""The interop kit: certify a VASP's inbound endpoint, learn what an MMSC accepts (``mm7 interop``).

One module a job:

- ``vasp_cases``: the VASP suite's case table (what is sent, what is expected), per schema
  version; ``quirks``: the named byte-level changes real MMSCs make to their requests;
- ``vasp_check``: one answer judged as carriers judge it (pure); ``vasp_suite``: the cases run
  against a URL over HTTP, every wait bounded;
- ``mmsc_plan``: the MMSC probe's variants (namespace/MM7Version pairs, packaging);
  ``mmsc_probe``: the plan sent through mm7's client, the matrix and the recommended dialect;
  ``dialect_toml``: that dialect as a ``[dialects.NAME]`` table for conf/dialects.toml;
- ``report``: the suite's table, JSON and HTML report, the probe's matrix and JSON;
- ``cli``: ``mm7 interop vasp`` and ``mm7 interop mmsc``; ``errors``: ``InteropError``;
  ``urls``: the check of a peer's URL; ``peer_text``: what a peer wrote, made safe to quote.

It sits beside the simulator (it acts as an MMSC toward a VASP, and as a VASP toward an MMSC)
and uses the layers below; nothing in the service imports it.
"""
