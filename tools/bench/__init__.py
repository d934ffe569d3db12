"""The multi-process benchmarks of tools/bench.py: real ``mm7 serve`` / ``mm7 simulate`` processes
and load generators on loopback, each compared with a baseline measured in the same run.

- one module per benchmark: ``sim``, ``mt``, ``loss``, ``memory``, ``campaign``, ``mo``,
  ``pgdriver``, ``cluster_mt``, ``cluster_mo``, ``cluster_loss`` (registered in tools/bench.py,
  which is the entry point: ``python tools/bench.py --only mt``);
- the harness: ``proc`` (processes, ports, CPU and memory from /proc), ``gateway`` (the gateway
  stack and its generated configuration), ``cluster_stack`` (one or more gateway processes on
  SQLite or PostgreSQL), ``pgserver`` (scratch databases, the server's CPU), ``simrun`` (the
  simulator with a tally and an MO generator), ``load`` (load generators), ``hook`` (a hook
  receiver), ``bare`` (payloads and the bare-aiohttp baseline).

Helper processes run as ``python -m bench.NAME`` with tools/ on PYTHONPATH (``Procs`` sets it).
"""
