// The MM7 simulator console: the traffic table (newest first, live by server-sent events),
// filters, the detail view, and the persona / faults / scenario controls, all through the
// control API. Everything that came from the wire is written with textContent, never as HTML.
"use strict";

(function () {
  const control = document.body.dataset.control;
  const OPERATIONS = [
    "SubmitReq", "CancelReq", "ReplaceReq", "extendedCancelReq", "extendedReplaceReq",
    "DeliverReq", "DeliveryReportReq", "ReadReplyReq",
  ];
  const MAX_ROWS = 2000;
  const $ = (id) => document.getElementById(id);
  let source = null;
  let lastId = 0;
  let selected = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function notice(text, bad) {
    const box = $("notice");
    box.textContent = text;
    box.className = bad ? "bad" : "";
  }

  async function api(method, path, body) {
    const init = { method: method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(control + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const why = data && data.error ? data.error : "HTTP " + response.status;
      throw new Error(why);
    }
    return data;
  }

  // ---------------------------------------------------------------- filters and the table
  function filterQuery() {
    const params = new URLSearchParams();
    const pairs = [["direction", "f-direction"], ["operation", "f-operation"],
      ["status", "f-status"], ["recipient", "f-recipient"]];
    for (const [name, id] of pairs) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  function statusText(e) {
    if (e.status_code === null || e.status_code === undefined) return "";
    return e.status_text ? e.status_code + " " + e.status_text : String(e.status_code);
  }

  function refused(e) {
    const ok = e.status_code !== null && e.status_code !== undefined &&
      e.status_code >= 1000 && e.status_code < 2000;
    return !ok || (e.problems && e.problems.length > 0);
  }

  function row(e) {
    const tr = el("tr", null, e.direction + (refused(e) ? " refused" : " ok"));
    tr.dataset.id = e.id;
    const time = e.at ? e.at.replace("T", " ").slice(0, 23) : "";
    const cells = [
      [e.id, "c-id"], [time, "c-time"], [e.direction, "c-dir"],
      [e.operation + (e.attempt > 1 ? " (try " + e.attempt + ")" : ""), "c-op"],
      [(e.version || "") + (e.mm7_version ? " / " + e.mm7_version : ""), "c-version"],
      [statusText(e) + (e.fault ? " [" + e.fault + "]" : ""), "c-status"],
      [e.http_status === null ? "" : e.http_status, "c-http"],
      [(e.leniencies || []).join(", "), "c-leniencies"],
      [e.duration_ms.toFixed(1) + " ms", "c-latency"],
      [(e.recipients || []).join(", "), "c-recipients"],
      [e.subject || "", "c-subject"], [e.transaction_id, "c-tid"],
    ];
    for (const [text, cls] of cells) tr.appendChild(el("td", text, cls));
    if (e.problems && e.problems.length) tr.title = e.problems.join("\n");
    tr.addEventListener("click", () => openDetail(e.id));
    return tr;
  }

  function addRows(exchanges) {
    const body = $("rows");
    for (const e of exchanges) {
      if (e.id <= lastId) continue;
      lastId = e.id;
      body.insertBefore(row(e), body.firstChild);
    }
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    $("count").textContent = body.rows.length + " shown";
  }

  function clearRows() {
    $("rows").replaceChildren();
    lastId = 0;
    $("count").textContent = "0 shown";
  }

  async function reload() {
    if (source) source.close();
    clearRows();
    const params = filterQuery();
    params.set("limit", String(MAX_ROWS));
    try {
      const data = await api("GET", "/traffic?" + params.toString());
      addRows(data.exchanges);
      notice("");
    } catch (err) {
      notice("filters: " + err.message, true);
      return;
    }
    connect();
  }

  function connect() {
    if (source) source.close();
    const params = filterQuery();
    params.set("after", String(lastId));
    source = new EventSource(control + "/traffic/stream?" + params.toString());
    source.addEventListener("open", () => live(true));
    source.addEventListener("error", () => live(false));
    source.addEventListener("exchange", (event) => {
      addRows([JSON.parse(event.data)]);
    });
    source.addEventListener("reset", () => {
      clearRows();
      hideDetail();
    });
    source.addEventListener("dropped", () => {
      // fell behind: the server let this stream go; resume after the last row shown
      connect();
    });
  }

  function live(on) {
    const box = $("live");
    box.textContent = on ? "live" : "reconnecting";
    box.className = on ? "live on" : "live off";
  }

  // ---------------------------------------------------------------- detail
  function hideDetail() {
    $("detail").hidden = true;
    selected = null;
  }

  function fillHeaders(table, headers) {
    table.replaceChildren();
    for (const [name, value] of headers || []) {
      const tr = el("tr");
      tr.appendChild(el("th", name));
      tr.appendChild(el("td", value));
      table.appendChild(tr);
    }
  }

  function partUrl(url) {
    // only links the control API made for this exchange
    return typeof url === "string" && url.startsWith(control + "/traffic/") ? url : null;
  }

  function media(kind, url) {
    if (kind === "image") {
      const img = el("img");
      img.src = url;
      img.alt = "image part";
      return img;
    }
    const player = el(kind === "video" ? "video" : "audio");
    player.controls = true;
    player.src = url;
    return player;
  }

  async function openDetail(id) {
    let d;
    try {
      d = await api("GET", "/traffic/" + id);
    } catch (err) {
      notice("exchange " + id + ": " + err.message, true);
      return;
    }
    selected = id;
    $("detail").hidden = false;
    $("detail-title").textContent = "#" + d.id + " " + d.direction + " " + d.operation;
    const summary = $("detail-summary");
    summary.replaceChildren();
    const facts = [
      ["time", d.at], ["status", statusText(d)], ["HTTP", d.http_status],
      ["version", (d.version || "") + (d.mm7_version ? " / " + d.mm7_version : "")],
      ["TransactionID", d.transaction_id], ["MessageID", d.message_id],
      ["recipients", (d.recipients || []).join(", ")], ["subject", d.subject],
      ["MMStatus", d.mm_status], ["fault", d.fault], ["attempt", d.attempt],
      ["latency", d.duration_ms + " ms"], ["leniencies", (d.leniencies || []).join(", ")],
      ["sizes", d.request_size + " B in request, " + d.response_size + " B in answer"],
    ];
    for (const [name, value] of facts) {
      if (value === null || value === undefined || value === "") continue;
      summary.appendChild(el("dt", name));
      summary.appendChild(el("dd", value, "d-" + name.toLowerCase()));
    }
    const problems = $("detail-problems");
    problems.replaceChildren();
    for (const p of d.problems || []) problems.appendChild(el("li", p));
    for (const p of [d.request_problem, d.slides_problem]) if (p) problems.appendChild(el("li", p));
    fillHeaders($("detail-request-headers"), d.request_headers);
    fillHeaders($("detail-response-headers"), d.response_headers);
    $("detail-request-soap").textContent = d.request_soap || d.request_body || "";
    $("detail-response-soap").textContent = d.response_soap || d.response_body || "";
    const parts = $("detail-parts");
    parts.replaceChildren();
    for (const p of d.parts || []) {
      const li = el("li");
      const label = p.content_type + ", " + p.size + " B" +
        (p.content_location ? ", " + p.content_location : "") +
        (p.content_id ? ", cid " + p.content_id : "");
      const url = partUrl(p.url);
      if (url) {
        const a = el("a", label);
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener";
        li.appendChild(a);
      } else {
        li.textContent = label;
      }
      if (p.text) li.appendChild(el("div", p.text, "part-text"));
      parts.appendChild(li);
    }
    const slides = $("detail-slides");
    slides.replaceChildren();
    (d.slides || []).forEach((slide, n) => {
      const box = el("div", null, "slide");
      box.dataset.slide = String(n + 1);
      for (const kind of ["image", "video", "audio"]) {
        const item = slide[kind];
        if (!item || item.part === null || item.part === undefined) continue;
        const url = partUrl(control + "/traffic/" + d.id + "/parts/" + item.part);
        if (url) box.appendChild(media(kind, url));
      }
      if (slide.text) box.appendChild(el("div", slide.text.text, "text"));
      slides.appendChild(box);
    });
  }

  // ---------------------------------------------------------------- persona, faults, scenario
  async function loadPersonas() {
    const data = await api("GET", "/personas");
    const select = $("persona");
    select.replaceChildren();
    for (const p of data.personas) {
      const option = el("option", p.name);
      option.value = p.name;
      option.title = p.description;
      select.appendChild(option);
    }
    select.value = data.current;
    showPersona(data.current, data.personas);
  }

  function showPersona(name, list) {
    $("persona-name").textContent = name;
    const found = (list || []).find((p) => p.name === name);
    $("persona-description").textContent = found ? found.description : "";
  }

  async function setPersona() {
    const name = $("persona").value;
    try {
      await api("PUT", "/persona", { name: name });
      await loadPersonas();
      notice("persona: " + name);
    } catch (err) {
      notice("persona: " + err.message, true);
    }
  }

  async function showFaults() {
    const data = await api("GET", "/faults");
    const lines = [];
    for (const f of data.once) lines.push("next: " + JSON.stringify(f));
    for (const f of data.rates) lines.push("rate: " + JSON.stringify(f));
    if (data.tps !== null) lines.push("TPS limit: " + data.tps);
    if (data.max_bytes !== null) lines.push("size limit: " + data.max_bytes + " B");
    $("faults-now").textContent = lines.join("\n") || "no faults";
  }

  function faultSpec() {
    const kind = $("fault-kind").value;
    const spec = { kind: kind };
    if (kind === "status") {
      spec.code = Number($("fault-code").value);
      if ($("fault-details").value) spec.details = $("fault-details").value;
    }
    if (kind === "http") spec.http_status = Number($("fault-http").value);
    if (kind === "latency") spec.delay = Number($("fault-delay").value);
    if ($("fault-operation").value) spec.operation = $("fault-operation").value;
    return spec;
  }

  async function addFault(event) {
    event.preventDefault();
    const spec = faultSpec();
    const rate = $("fault-rate").value;
    let body;
    if (rate !== "") {
      spec.rate = Number(rate);
      body = { rates: [spec] };
    } else {
      const count = Math.max(1, Number($("fault-count").value) || 1);
      body = { once: Array.from({ length: count }, () => spec) };
    }
    try {
      await api("POST", "/faults", body);
      notice("fault added: " + JSON.stringify(body));
    } catch (err) {
      notice("faults: " + err.message, true);
    }
    await showFaults();
  }

  async function setTps(event) {
    event.preventDefault();
    const value = $("tps").value;
    try {
      await api("POST", "/faults", { tps: value === "" || Number(value) === 0 ? null : Number(value) });
      notice("TPS limit: " + (value || "none"));
    } catch (err) {
      notice("TPS: " + err.message, true);
    }
    await showFaults();
  }

  async function clearFaults() {
    await api("DELETE", "/faults");
    notice("faults cleared");
    await showFaults();
  }

  async function loadScenarios() {
    const data = await api("GET", "/scenarios");
    const select = $("scenario");
    select.replaceChildren();
    for (const s of data.scenarios) {
      const option = el("option", s.name);
      option.value = s.name;
      option.title = s.description;
      select.appendChild(option);
    }
    await showScenario();
  }

  let scenarioTimer = null;

  async function showScenario() {
    let data;
    try {
      data = await api("GET", "/scenario");
    } catch (err) {
      return;
    }
    const box = $("scenario-state");
    box.replaceChildren();
    if (!data.name) {
      box.textContent = "no scenario has run";
      return;
    }
    box.appendChild(el("div", data.name + ": " + data.state, "scenario-" + data.state));
    const list = el("ol");
    for (const step of data.steps) {
      const text = step.describe + ": " + step.state + (step.problem ? " (" + step.problem + ")" : "");
      list.appendChild(el("li", text, "step-" + step.state));
    }
    box.appendChild(list);
    if (data.state === "running" && scenarioTimer === null) {
      scenarioTimer = setInterval(async () => {
        const again = await api("GET", "/scenario").catch(() => null);
        if (!again || again.state !== "running") {
          clearInterval(scenarioTimer);
          scenarioTimer = null;
        }
        await showScenario();
      }, 1000);
    }
  }

  async function runScenario() {
    try {
      await api("POST", "/scenario", { name: $("scenario").value });
      notice("scenario started: " + $("scenario").value);
    } catch (err) {
      notice("scenario: " + err.message, true);
    }
    await showScenario();
    await showFaults();
  }

  async function stopScenario() {
    await api("DELETE", "/scenario").catch(() => null);
    await showScenario();
  }

  async function reset() {
    await api("POST", "/reset");
    notice("traffic, messages and faults forgotten");
    hideDetail();
    await showFaults();
    await showScenario();
  }

  // ---------------------------------------------------------------- start
  function start() {
    for (const id of ["f-operation", "fault-operation"]) {
      for (const op of OPERATIONS) {
        const option = el("option", op);
        option.value = op;
        $(id).appendChild(option);
      }
    }
    for (const id of ["f-direction", "f-operation", "f-status", "f-recipient"]) {
      $(id).addEventListener("change", reload);
    }
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      reload();
    });
    $("f-clear").addEventListener("click", () => {
      for (const id of ["f-direction", "f-operation", "f-status", "f-recipient"]) $(id).value = "";
      reload();
    });
    $("persona").addEventListener("change", setPersona);
    $("fault-form").addEventListener("submit", addFault);
    $("tps-form").addEventListener("submit", setTps);
    $("faults-clear").addEventListener("click", clearFaults);
    $("scenario-run").addEventListener("click", runScenario);
    $("scenario-stop").addEventListener("click", stopScenario);
    $("reset").addEventListener("click", reset);
    $("detail-close").addEventListener("click", hideDetail);
    reload();
    loadPersonas().catch((err) => notice("personas: " + err.message, true));
    showFaults().catch((err) => notice("faults: " + err.message, true));
    loadScenarios().catch((err) => notice("scenarios: " + err.message, true));
    document.body.dataset.ready = "1";
  }

  start();
})();
