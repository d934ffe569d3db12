"""An MMSC simulator speaking the MMSC's half of MM7 (``mm7 simulate``).

``create_simulator_app`` builds the aiohttp application: the MM7 endpoint (``/mm7``), the JSON
control API (``/control``), the traffic record (``store``, served by ``traffic_api``, live by
``feed``) and the console page (``console``, ``/ui``). Personas (``conf/personas/*.toml``)
reproduce the field's dialects; ``faults`` injects misbehaviour; ``dlr`` and ``mo`` send what an
MMSC sends to a VASP (delivery reports, read replies, mobile-originated messages), with retries;
scenarios (``conf/scenarios/*.toml``, ``scenario`` and ``scenario_run``) script all of it.
"""
