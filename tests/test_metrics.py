"""Metrics (/metrics) and health (/healthz, /readyz) of the gateway service.

Everything real: a SqliteStore in tmp_path, MM7Clients against fake MMSCs on loopback, the
endpoints served by aiohttp servers on 127.0.0.1 port 0 and read with an aiohttp client. Each
test builds its own GatewayMetrics (its own registry): nothing leaks between tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mm7.core.status import MMStatus
from mm7.service.config.loader import load_config
from mm7.service.ops.health import Health, links_check, store_check
from mm7.service.ops.metrics import GatewayMetrics
from mm7.service.runtime import Gateway
from mm7.service.store import MoRelay, NewMessage, NewMo, SqliteStore
from mm7.transport.classify import Verdict
from mm7.transport.client import MM7Client
from mm7.transport.errors import MM7ClientError
from mm7.transport.flow import BreakerOpen, LinkFlow
from mm7.transport.link import LinkConfig, Secret
from tests.helpers.fake_mmsc import PATH, FakeMMSC, ok, raw, submit_req
from tests.helpers.runtime import bound_socket, write_config

Server = Callable[..., Awaitable[Any]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a text exposition by (name, labels), parsed by prometheus-client."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def scrape(metrics: GatewayMetrics) -> Samples:
    body, content_type = await metrics.render()
    assert content_type.startswith("text/plain")
    return samples(body.decode())


def flow(threshold: int = 1) -> LinkFlow:
    # the cooldown is an hour: an opened breaker stays open for the whole test, whatever the pace
    return LinkFlow(tps=None, max_in_flight=4, breaker_threshold=threshold, breaker_cooldown=3600.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "gw.db")
    yield s
    await s.close()


async def serve(aiohttp_server: Server, app: web.Application) -> str:
    server = await aiohttp_server(app)
    assert server.host == "127.0.0.1"
    return str(server.make_url("/")).rstrip("/")


async def get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as rsp:
        return rsp.status, rsp.headers.get("Content-Type", ""), await rsp.text()


# --- counters and histogram --------------------------------------------------------------------


async def test_exposition_has_the_series_after_calls() -> None:
    m = GatewayMetrics()
    m.observe_submit("carrier-a", Verdict.SUCCESS, 1000, 0.02)
    m.observe_submit("carrier-a", "success", 1000, 0.2)
    m.observe_submit("carrier-a", Verdict.PARTIAL, 1100, 0.03)
    m.observe_submit("carrier-a", Verdict.TRANSIENT, None, 30.5)  # timeout: no MM7 status
    m.observe_submit("carrier-b", Verdict.PERMANENT, 3001, 0.01)
    m.observe_retry("carrier-a")
    m.observe_retry("carrier-a")
    m.observe_report("carrier-a", MMStatus.FORWARDED)
    m.observe_report("carrier-a", MMStatus.RETRIEVED)
    m.observe_report("carrier-a", "retrieved")  # a spelling from a lenient peer
    m.observe_report("carrier-a", "Delivered!")  # not an MMStatus: bounded to "other"
    m.observe_inbound("DeliveryReportReq", 1000)
    m.observe_inbound("DeliverReq", 4004)
    m.observe_inbound("<script>", 2007)

    found = await scrape(m)

    assert value(found, "mm7_submits_total", link="carrier-a", outcome="success") == 2
    assert value(found, "mm7_submits_total", link="carrier-a", outcome="partial") == 1
    assert value(found, "mm7_submits_total", link="carrier-a", outcome="transient") == 1
    assert value(found, "mm7_submits_total", link="carrier-b", outcome="permanent") == 1
    assert value(found, "mm7_submit_status_total", link="carrier-a", status_code="1000") == 2
    assert value(found, "mm7_submit_status_total", link="carrier-a", status_code="1100") == 1
    assert value(found, "mm7_submit_status_total", link="carrier-a", status_code="none") == 1
    assert value(found, "mm7_submit_status_total", link="carrier-b", status_code="3001") == 1

    hist = "mm7_submit_duration_seconds"
    assert value(found, hist + "_count", link="carrier-a") == 4
    assert value(found, hist + "_sum", link="carrier-a") == pytest.approx(30.75)
    assert value(found, hist + "_bucket", link="carrier-a", le="0.025") == 1
    assert value(found, hist + "_bucket", link="carrier-a", le="0.25") == 3
    assert value(found, hist + "_bucket", link="carrier-a", le="30.0") == 3
    assert value(found, hist + "_bucket", link="carrier-a", le="+Inf") == 4

    assert value(found, "mm7_retries_total", link="carrier-a") == 2
    assert value(found, "mm7_delivery_reports_total", link="carrier-a", mm_status="Forwarded") == 1
    assert value(found, "mm7_delivery_reports_total", link="carrier-a", mm_status="Retrieved") == 2
    assert value(found, "mm7_delivery_reports_total", link="carrier-a", mm_status="other") == 1
    assert (
        value(
            found, "mm7_inbound_requests_total", operation="DeliveryReportReq", status_code="1000"
        )
        == 1
    )
    assert (
        value(found, "mm7_inbound_requests_total", operation="DeliverReq", status_code="4004") == 1
    )
    assert value(found, "mm7_inbound_requests_total", operation="other", status_code="2007") == 1


async def test_unknown_outcome_is_refused() -> None:
    m = GatewayMetrics()
    with pytest.raises(ValueError, match="unknown submit outcome"):
        m.observe_submit("carrier-a", "maybe", 1000, 0.1)
    found = await scrape(m)
    assert not [k for k in found if k[0] == "mm7_submits_total"]


async def test_separate_instances_do_not_share_state() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()
    assert one.registry is not two.registry
    one.observe_submit("carrier-a", Verdict.SUCCESS, 1000, 0.1)
    one.observe_retry("carrier-a")
    one.track_link("carrier-a", flow())
    first, second = await scrape(one), await scrape(two)
    assert value(first, "mm7_submits_total", link="carrier-a", outcome="success") == 1
    assert value(first, "mm7_retries_total", link="carrier-a") == 1
    assert value(second, "mm7_submits_total", link="carrier-a", outcome="success") is None
    assert value(second, "mm7_retries_total", link="carrier-a") is None
    assert value(second, "mm7_link_breaker_state", link="carrier-a") is None
    # and a third instance can be created after the others (no duplicate-registration error)
    GatewayMetrics().observe_retry("carrier-a")


# --- link and store state --------------------------------------------------------------------


async def test_breaker_state_gauge_follows_the_flow() -> None:
    m = GatewayMetrics()
    f = flow(threshold=2)
    m.track_link("carrier-a", f)
    found = await scrape(m)
    assert value(found, "mm7_link_breaker_state", link="carrier-a") == 0
    assert value(found, "mm7_link_in_flight", link="carrier-a") == 0
    # tracking starts every outcome at zero, so rate() works from the first scrape
    for outcome in ("success", "partial", "transient", "permanent"):
        assert value(found, "mm7_submits_total", link="carrier-a", outcome=outcome) == 0

    f.breaker.record_failure()
    f.breaker.record_failure()
    assert value(await scrape(m), "mm7_link_breaker_state", link="carrier-a") == 2
    with pytest.raises(BreakerOpen):
        f.breaker.admit()  # the cooldown is not over: refused, still open
    assert m.breaker_states() == {"carrier-a": f.breaker.state}


async def test_breaker_half_open_is_one() -> None:
    m = GatewayMetrics()
    f = LinkFlow(tps=None, max_in_flight=1, breaker_threshold=1, breaker_cooldown=0.0)
    m.track_link("carrier-a", f.breaker)
    f.breaker.record_failure()  # open, cooldown 0: the next admit is the probe
    f.breaker.admit()
    assert value(await scrape(m), "mm7_link_breaker_state", link="carrier-a") == 1
    f.breaker.record_success()
    assert value(await scrape(m), "mm7_link_breaker_state", link="carrier-a") == 0
    m.untrack_link("carrier-a")
    assert value(await scrape(m), "mm7_link_breaker_state", link="carrier-a") is None


async def test_a_real_client_failing_opens_the_breaker_in_the_metrics(
    aiohttp_server: Server,
) -> None:
    fake = FakeMMSC(script=[ok(1000), raw(503)])
    server = await aiohttp_server(fake.app())
    url = str(server.make_url(PATH))
    m = GatewayMetrics()
    config = LinkConfig(name="carrier-a", url=url, breaker_threshold=1, breaker_cooldown=3600.0)
    async with MM7Client(config) as client:
        m.track_link("carrier-a", client)
        result = await client.send(submit_req())
        m.observe_submit("carrier-a", result.verdict, result.status.code, 0.01)
        with pytest.raises(MM7ClientError) as info:
            await client.send(submit_req())
        error = info.value
        m.observe_submit("carrier-a", error.verdict, error.code, 0.01)
        found = await scrape(m)
    assert value(found, "mm7_submits_total", link="carrier-a", outcome="success") == 1
    assert value(found, "mm7_submits_total", link="carrier-a", outcome="transient") == 1
    assert value(found, "mm7_submit_status_total", link="carrier-a", status_code="1000") == 1
    assert value(found, "mm7_link_breaker_state", link="carrier-a") == 2


async def test_queue_depth_and_store_counters_come_from_the_store(store: SqliteStore) -> None:
    m = GatewayMetrics()
    m.track_store(store, ["carrier-a", "carrier-b"])
    found = await scrape(m)
    assert value(found, "mm7_queue_depth", link="carrier-a") == 0
    assert value(found, "mm7_queue_depth", link="carrier-b") == 0
    assert value(found, "mm7_store_up") == 1

    fields = {"from": "12345", "subject": "hi"}
    await store.enqueue_message(NewMessage("carrier-a", fields), ["+15551230001", "+15551230002"])
    await store.enqueue_message(NewMessage("carrier-b", fields), ["+15551230003"])
    found = await scrape(m)
    assert value(found, "mm7_queue_depth", link="carrier-a") == 2
    assert value(found, "mm7_queue_depth", link="carrier-b") == 1
    stats = store.stats()
    assert value(found, "mm7_store_commits_total") == stats.commits >= 1
    assert value(found, "mm7_store_writes_total") == stats.writes >= 2

    await store.close()  # the store stops answering: no stale depths, store_up 0
    found = await scrape(m)
    assert value(found, "mm7_queue_depth", link="carrier-a") is None
    assert value(found, "mm7_store_up") == 0


async def test_relay_events_by_status_come_from_the_store(store: SqliteStore) -> None:
    m = GatewayMetrics()
    m.track_store(store, ["carrier-a"])
    assert value(await scrape(m), "mm7_relay_events", status="pending") is None
    relay = MoRelay(hook="app", route="default", media="url", event={"type": "mo"})
    for n in range(3):
        await store.store_mo(NewMo("carrier-a", f"t{n}", None, {}, relay=relay))
    (item,) = await store.lease_relay("w", 1, timedelta(seconds=60))
    assert await store.relay_outcome(item, "dead", error="HTTP 500")
    found = await scrape(m)
    assert value(found, "mm7_relay_events", status="pending") == 2
    assert value(found, "mm7_relay_events", status="dead") == 1
    m.observe_relay("app", "dead")
    m.observe_relay("callback:app.example", "delivered")
    found = await scrape(m)
    assert value(found, "mm7_relay_attempts_total", hook="app", outcome="dead") == 1
    assert value(found, "mm7_relay_attempts_total", hook="callback", outcome="delivered") == 1


# --- the endpoints ------------------------------------------------------------------------------


async def test_metrics_served_by_a_real_server(aiohttp_server: Server, store: SqliteStore) -> None:
    m = GatewayMetrics()
    m.track_store(store, ["carrier-a"])
    m.track_link("carrier-a", flow())
    m.observe_submit("carrier-a", Verdict.SUCCESS, 1000, 0.05)
    app = web.Application()
    m.add_to(app, "/metrics")
    base = await serve(aiohttp_server, app)

    status, content_type, text = await get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# TYPE mm7_submits_total counter" in text
    found = samples(text)
    assert value(found, "mm7_submits_total", link="carrier-a", outcome="success") == 1
    assert value(found, "mm7_submit_duration_seconds_count", link="carrier-a") == 1
    assert value(found, "mm7_queue_depth", link="carrier-a") == 0
    assert value(found, "mm7_link_breaker_state", link="carrier-a") == 0

    # OpenMetrics for a scraper that asks for it
    status, content_type, text = await get(
        base + "/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


async def test_metrics_stand_alone_application(aiohttp_server: Server) -> None:
    m = GatewayMetrics()
    m.observe_retry("carrier-a")
    base = await serve(aiohttp_server, m.application("/prom"))
    status, _, text = await get(base + "/prom")
    assert status == 200
    assert value(samples(text), "mm7_retries_total", link="carrier-a") == 1
    status, _, _ = await get(base + "/metrics")
    assert status == 404


async def test_healthz_and_readyz_flip_when_the_store_fails(
    aiohttp_server: Server, store: SqliteStore
) -> None:
    health = Health({"store": store_check(store)})
    app = web.Application()
    health.add_to(app)
    base = await serve(aiohttp_server, app)

    assert (await get(base + "/healthz"))[0] == 200
    status, content_type, text = await get(base + "/readyz")
    assert status == 200
    assert content_type.startswith("application/json")
    assert '"status": "ready"' in text

    await store.close()
    status, content_type, text = await get(base + "/readyz")
    assert status == 503
    assert content_type.startswith("application/json")
    async with aiohttp.ClientSession() as session, session.get(base + "/readyz") as rsp:
        body = await rsp.json()
    assert body["status"] == "not ready"
    assert body["reason"].startswith("store: RuntimeError: store is closed")
    assert body["checks"] == {"store": "RuntimeError: store is closed"}
    # liveness does not depend on the store
    assert (await get(base + "/healthz"))[0] == 200


async def test_readyz_is_not_ready_when_every_breaker_is_open(
    aiohttp_server: Server, store: SqliteStore
) -> None:
    a, b = flow(), flow()
    links = {"carrier-a": a, "carrier-b": b}
    health = Health({"store": store_check(store), "links": links_check(lambda: links)})
    base = await serve(aiohttp_server, health.application())

    a.breaker.record_failure()  # one link down: still ready, the other can send
    ready, body = await health.readiness()
    assert ready and body["checks"] == {"store": "ok", "links": "ok"}

    b.breaker.record_failure()
    async with aiohttp.ClientSession() as session, session.get(base + "/readyz") as rsp:
        assert rsp.status == 503
        body = await rsp.json()
    assert body["reason"] == "links: circuit breaker open on every link: carrier-a, carrier-b"
    assert body["checks"]["store"] == "ok"

    a.breaker.record_success()
    assert (await get(base + "/readyz"))[0] == 200


async def test_readyz_checks_returning_false_or_a_reason_and_shutdown(
    aiohttp_server: Server,
) -> None:
    answers: dict[str, object] = {"a": None, "b": True}

    def check(name: str) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            return answers[name]

        return run

    health = Health({"a": check("a"), "b": check("b")})
    base = await serve(aiohttp_server, health.application())
    assert (await get(base + "/readyz"))[0] == 200

    answers["a"], answers["b"] = False, "migrating"
    ready, body = await health.readiness()
    assert not ready
    assert body["reason"] == "a: failed; b: migrating"

    answers["a"], answers["b"] = None, None
    health.shutting_down()
    status, _, text = await get(base + "/readyz")
    assert status == 503
    assert '"reason": "shutting down"' in text
    assert (await get(base + "/healthz"))[0] == 200


async def test_links_check_with_no_links_is_ready() -> None:
    ready, body = await Health({"links": links_check({})}).readiness()
    assert ready
    assert body == {"status": "ready", "checks": {"links": "ok"}}


# --- what a scrape carries, and who may scrape --------------------------------------------------


async def test_no_created_series_and_the_process_series() -> None:
    m = GatewayMetrics()
    m.observe_submit("carrier-a", Verdict.SUCCESS, 1000, 0.02)
    m.observe_retry("carrier-a")
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        body, _ = await m.render(accept)
        text = body.decode()
        assert "mm7_submits_total" in text or "mm7_submits" in text
        assert "_created" not in text, accept
    found = await scrape(m)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert value(found, name) is not None, name
    assert value(found, "process_resident_memory_bytes") > 0  # type: ignore[operator]
    assert value(found, "process_open_fds") >= 1  # type: ignore[operator]


async def test_process_series_can_be_left_out() -> None:
    found = await scrape(GatewayMetrics(process=False))
    assert not [name for name, _ in found if name.startswith("process_")]


async def test_a_token_guards_the_metrics(aiohttp_server: Server) -> None:
    m = GatewayMetrics()
    m.observe_retry("carrier-a")
    app = web.Application()
    m.add_to(app, "/metrics", token=Secret("scrape-token-0123456789"))
    base = await serve(aiohttp_server, app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "/metrics", headers=headers) as rsp,
        ):
            assert rsp.status == 401, headers
            assert rsp.headers["WWW-Authenticate"].startswith("Bearer")
            body = await rsp.text()
        assert "mm7_retries" not in body and "scrape-token" not in body
    status, _, text = await get(base + "/metrics", Authorization="Bearer scrape-token-0123456789")
    assert status == 200
    assert value(samples(text), "mm7_retries_total", link="carrier-a") == 1


@pytest.mark.parametrize("listen", [None, "127.0.0.1:0"])
async def test_the_gateway_asks_for_the_configured_token(
    tmp_path: Path, listen: str | None
) -> None:
    extra = '\n[metrics]\ntoken_env = "MM7_METRICS_TOKEN"\n'
    if listen is not None:
        extra += f'listen = "{listen}"\n'
    with bound_socket() as mmsc:
        path = write_config(tmp_path, mmsc.getsockname()[1], extra=extra)
        config = load_config(path, env={"MM7_METRICS_TOKEN": "from-the-env-0123456789"})
        gateway = Gateway(config, configure_logs=False, announce=lambda line: None)
        await gateway.start()
        try:
            assert gateway.metrics_url is not None
            assert (gateway.metrics_url.startswith(gateway.api_url or "")) == (listen is None)
            status, _, _ = await get(gateway.metrics_url)
            assert status == 401
            status, _, text = await get(
                gateway.metrics_url, Authorization="Bearer from-the-env-0123456789"
            )
            assert status == 200 and 'mm7_queue_depth{link="main"} 0.0' in text
        finally:
            await gateway.stop()
