"""What operators watch: Prometheus metrics, health checks and structured logs.

- ``metrics``: ``GatewayMetrics`` (per-link submits, verdicts, latencies, queue depth, breaker
  state, store group-commit counters) served on ``[metrics] path``;
- ``health``: ``/healthz`` and ``/readyz`` (store reachable, links' breakers and certificates);
- ``logs``: structlog configured once per process (JSON in production), secrets masked.
"""
