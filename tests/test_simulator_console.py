"""The simulator's console (/ui) clicked through in headless Chromium (tests/helpers/browser.py):
traffic sent by a real client appears live without a reload, in both directions; a filter
narrows the rows; a row opens its detail (SOAP, parts, slides with the image the browser
really loaded); the persona and a fault chosen on the page take effect on the next request (the
lenient aggregator's row shows the leniency it forgave); a hostile Subject and text stay text.
Skips, saying why, without a chromium binary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mm7.core.codec import encode
from mm7.transport.errors import MM7ClientError
from tests.helpers.browser import Browser, browser_binary
from tests.helpers.simulator import Make, submit

HOSTILE = '<img src=x id=pwn onerror="window.__xss=1">"&'
HOSTILE_TEXT = "<script>window.__xss=2</script><b id=bold>not bold</b>"


async def test_console_live_filter_detail_persona_fault_in_a_browser(
    sim_rig: Make, tmp_path: Path
) -> None:
    browser_binary()  # skips first, saying why, without one
    r = await sim_rig()
    async with Browser.start(tmp_path / "profile") as b:
        await b.open(r.base + "/ui")
        await b.wait("document.body.dataset.ready === '1'")
        await b.wait("document.getElementById('live').textContent === 'live'")
        assert await b.js("document.querySelectorAll('#rows tr').length") == 0
        await b.js("window.__noReload = 42")

        # live: a submit (hostile subject and text) and the report the simulator sends back
        hostile = submit("+15551230001", smil=True, text=HOSTILE_TEXT, tid="tx-live")
        hostile = dataclasses.replace(hostile, subject=HOSTILE)
        async with r.client() as client:
            rsp = await client.submit(hostile)
        await r.vasp.wait(1)
        await b.wait(
            "Array.from(document.querySelectorAll('#rows tr')).some("
            "tr => tr.querySelector('.c-op').textContent.startsWith('DeliveryReportReq'))"
        )
        assert await b.js("window.__noReload") == 42  # no reload: the rows came by SSE
        rows = await b.js(
            "Array.from(document.querySelectorAll('#rows tr')).map(tr => "
            "[tr.className, tr.querySelector('.c-op').textContent, "
            "tr.querySelector('.c-status').textContent, tr.querySelector('.c-subject').textContent,"
            " tr.querySelector('.c-recipients').textContent, tr.querySelector('.c-version')"
            ".textContent])"
        )
        # newest first: the report (out) above the submit (in)
        assert [row[1] for row in rows] == ["DeliveryReportReq", "SubmitReq"], rows
        out_row, in_row = rows
        assert out_row[0].startswith("out") and in_row[0].startswith("in")
        assert in_row[2] == "1000 Success" and in_row[3] == HOSTILE  # shown as text
        assert in_row[4] == "+15551230001" and in_row[5].startswith("REL-6-MM7-1-4")
        assert await b.js("document.getElementById('pwn') === null")
        assert await b.js("window.__xss === undefined")

        # filter: direction out leaves the report only
        await b.choose("#f-direction", "out")
        await b.wait(
            "(() => { const ops = Array.from(document.querySelectorAll('#rows .c-op'))"
            ".map(e => e.textContent); return ops.length === 1 && "
            "ops[0] === 'DeliveryReportReq'; })()"
        )
        await b.click("#f-clear")
        await b.wait("document.querySelectorAll('#rows tr').length === 2")

        # detail of the submit: SOAP pretty, parts with links, the slide's image loaded
        submit_id = next(e.id for e in r.sim.store.exchanges if e.operation == "SubmitReq")
        await b.click(f'#rows tr[data-id="{submit_id}"]')
        await b.wait("!document.getElementById('detail').hidden")
        await b.wait("document.getElementById('detail-request-soap').textContent.length > 0")
        soap = await b.js("document.getElementById('detail-request-soap').textContent")
        assert "<mm7:SubmitReq" in soap or "SubmitReq" in soap
        assert "tx-live" in soap and "\n  " in soap  # indented
        parts = await b.texts("#detail-parts li")
        assert any(p.startswith("image/png") for p in parts), parts
        assert await b.js("document.querySelector('#detail-summary .d-subject').textContent") == (
            HOSTILE
        )
        assert await b.js("document.querySelector('#detail-summary .d-messageid').textContent") == (
            rsp.message_id
        )
        await b.wait(
            "(() => { const img = document.querySelector('#detail-slides .slide img');"
            " return img && img.complete && img.naturalWidth === 8; })()"
        )
        slide_text = await b.texts("#detail-slides .slide .text")
        assert slide_text == [HOSTILE_TEXT]
        assert await b.js("document.getElementById('bold') === null")
        headers = await b.texts("#detail-request-headers th")
        assert "Content-Type" in headers or "content-type" in [h.lower() for h in headers]

        # persona chosen on the page: aggregator takes one recipient per submit
        await b.wait("document.querySelectorAll('#persona option').length > 1")
        await b.choose("#persona", "aggregator")
        await b.wait("document.getElementById('persona-name').textContent === 'aggregator'")
        assert (await r.control("GET", "/persona"))["name"] == "aggregator"
        two = submit("+15551230001", "+15551230002", smil=True, report=False, tid="tx-two")
        async with r.client() as client:
            try:
                await client.submit(two)
                raise AssertionError("the aggregator persona should refuse two recipients")
            except MM7ClientError as exc:
                refused_code = exc.code
        assert refused_code == 3003
        await b.wait(
            "Array.from(document.querySelectorAll('#rows tr.refused .c-status'))"
            ".some(e => e.textContent.startsWith('3003'))"
        )

        # the aggregator is lenient: an unknown element is forgiven, and the row says so
        encoded = encode(submit("+15551230001", smil=True, report=False, tid="tx-lenient"))
        bogus = encoded.body.replace(
            b"<mm7:Recipients>", b"<mm7:Bogus>x</mm7:Bogus><mm7:Recipients>", 1
        )
        status, _, _ = await r.post(bogus, encoded.content_type)
        assert status == 200
        await b.wait(
            "Array.from(document.querySelectorAll('#rows tr')).some(tr => "
            "tr.querySelector('.c-tid').textContent === 'tx-lenient' && "
            "tr.querySelector('.c-leniencies').textContent === 'unknown-element')"
        )

        # a fault chosen on the page: the next submit is answered 4006
        await b.choose("#fault-kind", "status")
        await b.choose("#fault-code", "4006")
        await b.click("#fault-add")
        await b.wait("document.getElementById('faults-now').textContent.includes('4006')")
        one = submit("+15551230003", smil=True, report=False, tid="tx-fault")
        async with r.client() as client:
            try:
                await client.submit(one)
                raise AssertionError("the fault should have answered 4006")
            except MM7ClientError as exc:
                assert exc.code == 4006
        await b.wait(
            "Array.from(document.querySelectorAll('#rows tr')).some(tr => "
            "tr.querySelector('.c-tid').textContent === 'tx-fault' && "
            "tr.querySelector('.c-status').textContent.startsWith('4006'))"
        )

        # the status filter keeps the refused ones only, the table newest first
        await b.choose("#f-status", "error")
        await b.wait("document.querySelectorAll('#rows tr').length === 2")
        tids = await b.texts("#rows .c-tid")
        assert tids == ["tx-fault", "tx-two"]  # tx-lenient was taken: not an error

        # a scenario run from the page: its answers are queued, its steps shown
        await b.wait("document.querySelectorAll('#scenario option').length >= 5")
        await b.choose("#scenario", "carrier-throttling")
        await b.click("#scenario-run")
        await b.wait(
            "document.getElementById('scenario-state').textContent"
            ".includes('carrier-throttling: running')"
        )
        steps = await b.texts("#scenario-state li")
        assert steps[0].startswith("the next 3 SubmitReq(s) answered 4006: running"), steps
        await b.wait("document.getElementById('faults-now').textContent.split('4006').length > 3")
        assert await b.js("window.__noReload") == 42
