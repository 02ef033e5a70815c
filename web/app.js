// The Cadre dashboard: plain JS, no framework, no network but the broker.
// Lists come from /api/*; everything after that is driven by the broker's
// event stream (/api/events, server-sent events): no polling loop.
"use strict";

const $ = (sel) => document.querySelector(sel);
const S = { nodes: [], sessions: [], stats: null, plans: [], planId: null, plan: null, streams: {},
            history: null, historyId: null, costs: null, page: "agents" };
const STREAM_CHUNKS = 400;   // kept per agent
const SHOWN_MESSAGES = 500;  // history rendered at once (search narrows it)

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const svg = (tag, attrs, ...kids) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
};

async function api(path, opts) {
  const r = await fetch("/api/" + path, Object.assign({ credentials: "same-origin" }, opts || {}));
  const j = await r.json();
  if (!r.ok) throw new Error(j.detail || j.error || String(r.status));
  return j;
}

// Runs fn at most once per ms, after the last call (events come in bursts).
function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

const money = (x) => "$" + (x || 0).toFixed(x >= 1 ? 2 : 4);
const secs = (x) => (x === undefined || x === null) ? "—" : x >= 90 ? (x / 60).toFixed(1) + " min" : x.toFixed(1) + " s";
const ms = (x) => x >= 1000 ? (x / 1000).toFixed(2) + " s" : Math.round(x) + " ms";

// ---- nodes ----
async function loadNodes() { S.nodes = await api("nodes"); renderNodes(); }
function renderNodes() {
  const body = $("#nodes tbody");
  body.replaceChildren(...S.nodes.map((n) => el("tr", { "data-node": n.name },
    el("td", {}, n.name, el("div", { class: "meta" }, n.host || "")),
    el("td", {}, Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ") || "—"),
    el("td", {}, `${n.busy} / ${n.slots}`),
    el("td", {}, ms(n.last_seen_ms_ago || 0) + " ago"),
    el("td", {}, n.draining ? "draining" + (n.drain_reason ? " (" + n.drain_reason + ")" : "") : "ready"),
    el("td", {}, n.turns_served === undefined ? "—" : n.turns_served))));
  if (!S.nodes.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "no node is connected")));
}

// ---- agents ----
async function loadAgents() {
  const [sessions, stats] = await Promise.all([api("sessions"), api("stats")]);
  S.sessions = sessions; S.stats = stats;
  renderAgents(); renderPerf();
  if (S.page === "history") renderSessions();
}
function streamEl(id) {
  const pre = el("pre", { class: "stream", id: "stream-" + id });
  for (const c of S.streams[id] || []) pre.append(chunkEl(c));
  return pre;
}
function chunkEl(c) {
  if (c.kind === "thinking") return el("span", { class: "thinking" }, c.text);
  if (c.kind === "tool_call") return el("span", { class: "tool" }, `\n⚙ ${c.text}\n`);
  if (c.kind === "tool_result") return el("span", { class: "tool" + (c.ok ? "" : " err") }, `  ↳ ${c.text}\n`);
  return document.createTextNode(c.text);
}
function renderAgents() {
  const byModel = {};
  for (const a of (S.stats && S.stats.agents) || []) byModel[a.id] = a.model;
  const kids = {};
  for (const s of S.sessions) (kids[s.parent || ""] = kids[s.parent || ""] || []).push(s);
  const item = (s) => {
    const u = s.usage || {};
    const li = el("li", { "data-agent": s.id },
      el("div", { class: "agent" },
        el("span", { class: "id" }, s.id),
        el("span", { class: "status " + s.status }, s.status),
        el("span", { class: "meta" }, `${s.role} · ${byModel[s.id] || "?"} · ` +
          `${(u.prompt_tokens || 0) + (u.completion_tokens || 0)} tokens · ${money(u.cost)}`),
        s.task ? el("div", { class: "meta" }, s.task.slice(0, 200)) : null,
        streamEl(s.id)));
    const sub = kids[s.id];
    if (sub) li.append(el("ul", {}, ...sub.map(item)));
    return li;
  };
  for (const k of Object.keys(pending)) delete pending[k]; // the streams are rebuilt whole below
  const ids = new Set(S.sessions.map((s) => s.id));
  const roots = S.sessions.filter((s) => !s.parent || !ids.has(s.parent));
  $("#agents").replaceChildren(...roots.map(item));
  const running = S.sessions.filter((s) => s.status === "running").length;
  const t = (S.stats && S.stats.total) || {};
  $("#agents-sum").textContent = `${S.sessions.length} agents, ${running} running · ` +
    `${(t.prompt_tokens || 0) + (t.completion_tokens || 0)} tokens · ${money(t.cost)}`;
}
function renderPerf() {
  const p = (S.stats && S.stats.performance) || {};
  const rows = [];
  for (const [by, group] of [["role", p.by_role || {}], ["model", p.by_model || {}]])
    for (const [name, f] of Object.entries(group)) {
      const s = f.summaries || {};
      rows.push(el("tr", {}, el("td", {}, `${by}: ${name}`), el("td", {}, f.turns),
        el("td", {}, Math.round(100 * f.success_rate) + "%"), el("td", {}, f.retries),
        el("td", {}, `${ms(f.ttft_ms.p50)} / ${ms(f.ttft_ms.p95)}`),
        el("td", {}, `${ms(f.latency_ms.p50)} / ${ms(f.latency_ms.p95)}`),
        el("td", {}, f.tokens_per_s.toFixed(1)), el("td", {}, money(f.cost_per_turn)),
        el("td", {}, `${s.PASS} / ${s.FAIL} / ${s.PARTIAL}`), el("td", {}, `${f.tool_calls} (${f.tool_errors})`)));
    }
  $("#perf tbody").replaceChildren(...rows);
}
// A delta: appended to its agent's stream where it is shown.
function onDelta(d) {
  const id = d.session;
  let c = { kind: d.kind, text: d.text || "" };
  if (d.kind === "tool_call" || d.kind === "tool_result") {
    let call = d.call;
    if (!call) try { call = JSON.parse(d.text); } catch (e) { call = {}; }
    c = d.kind === "tool_call" ? { kind: d.kind, text: `${call.name || "tool"} ${call.arguments || ""}` }
                               : { kind: d.kind, ok: call.ok !== false, text: call.summary || (call.ok === false ? "failed" : "ok") };
  }
  const list = (S.streams[id] = S.streams[id] || []);
  list.push(c);
  if (list.length > STREAM_CHUNKS) list.splice(0, list.length - STREAM_CHUNKS);
  (pending[id] = pending[id] || []).push(c);
  if (!flushing) flushing = requestAnimationFrame(flushStreams);
}
// Deltas reach the page once a frame: one layout for many tokens.
const pending = {};
let flushing = 0;
function flushStreams() {
  flushing = 0;
  for (const [id, chunks] of Object.entries(pending)) {
    delete pending[id];
    const pre = document.getElementById("stream-" + id);
    if (!pre) continue;
    const frag = document.createDocumentFragment();
    for (const c of chunks.slice(-STREAM_CHUNKS)) frag.append(chunkEl(c));
    pre.append(frag);
    let extra = pre.childNodes.length - STREAM_CHUNKS;
    while (extra-- > 0) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  }
}

// ---- plans ----
async function loadPlans() {
  S.plans = await api("plans");
  renderPlans();
  if (S.planId) await openPlan(S.planId);
}
function renderPlans() {
  $("#plans tbody").replaceChildren(...S.plans.map((p) => el("tr", { "data-plan": p.id },
    el("td", {}, p.id), el("td", {}, el("a", { href: "#plans", onclick: () => openPlan(p.id) }, p.title || "plan")),
    el("td", {}, el("span", { class: "status " + p.status }, p.status)),
    el("td", {}, (p.steps || []).length || p.n_steps || ""),
    el("td", {}, p.estimate ? `${secs(p.estimate.seconds)} · ${money(p.estimate.cost)}` : ""),
    el("td", {}, p.status === "pending" ? decisionButtons(p.id) : ""))));
}
function decisionButtons(id) {
  const act = async (what) => {
    try { await api(`plans/${id}/${what}`, { method: "POST" }); } catch (e) { alert(`${what}: ${e.message}`); }
    S.planId = id;
    loadPlans();
  };
  return el("span", {}, el("button", { class: "approve", onclick: () => act("approve") }, "Approve"),
    el("button", { class: "reject", onclick: () => act("reject") }, "Reject"));
}
async function openPlan(id) {
  S.planId = id;
  S.plan = await api("plans/" + id);
  renderPlan();
}
const MARK = { done: "✓", running: "⟳", retrying: "⟳", failed: "✗", abandoned: "✗" };
function renderPlan() {
  const p = S.plan;
  if (!p) return;
  const steps = p.steps || [];
  const level = {};
  const depth = (s) => {
    if (level[s.number] !== undefined) return level[s.number];
    level[s.number] = 0; // a cycle (an invalid plan) stops here
    const deps = (s.dependencies || []).map((n) => steps.find((x) => x.number === n)).filter(Boolean);
    return (level[s.number] = deps.length ? 1 + Math.max(...deps.map(depth)) : 0);
  };
  steps.forEach(depth);
  const W = 250, H = 54, GX = 50, GY = 18, rows = {};
  const pos = {};
  for (const s of steps) {
    const l = level[s.number], r = (rows[l] = (rows[l] || 0) + 1) - 1;
    pos[s.number] = { x: 10 + l * (W + GX), y: 10 + r * (H + GY) };
  }
  const width = 20 + (Math.max(0, ...Object.values(level)) + 1) * (W + GX);
  const height = 20 + Math.max(1, ...Object.values(rows)) * (H + GY);
  const g = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "dag" },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8,
      markerHeight: 8, orient: "auto" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }))));
  for (const s of steps)
    for (const d of s.dependencies || []) {
      const a = pos[d], b = pos[s.number];
      if (!a) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      g.append(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
    }
  for (const s of steps) {
    const { x, y } = pos[s.number];
    const took = s.started_ms && s.finished_ms ? (s.finished_ms - s.started_ms) / 1000 : null;
    g.append(svg("g", { class: "step " + s.status, "data-step": s.number, "data-status": s.status },
      svg("rect", { x, y, width: W, height: H, rx: 6 }),
      svg("text", { x: x + 8, y: y + 20, class: "mark" }, `${MARK[s.status] || "○"} ${s.number}. ${(s.title || "").slice(0, 30)}`),
      svg("text", { x: x + 8, y: y + 40 }, `${s.agent || ""} · est ${secs(s.estimated_seconds)}` +
        (took !== null ? ` · took ${secs(took)}` : ""))));
  }
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...["step", "agent", "status", "estimate", "actual",
    "attempts", "cost"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...steps.map((s) => el("tr", {}, el("td", {}, `${s.number}. ${s.title}`),
      el("td", {}, (s.agent || "") + (s.profile ? ` on ${s.profile}` : "")),
      el("td", {}, `${MARK[s.status] || "○"} ${s.status}`), el("td", {}, secs(s.estimated_seconds)),
      el("td", {}, s.started_ms && s.finished_ms ? secs((s.finished_ms - s.started_ms) / 1000) : "—"),
      el("td", {}, s.attempts), el("td", {}, s.usage ? money(s.usage.cost) : "—")))));
  const errs = (p.errors || []).map((e) => el("div", { class: "err" }, e.message));
  $("#plan").replaceChildren(el("h2", {}, `Plan ${p.id}: ${p.title || ""} `, el("span", { class: "status " + p.status,
    id: "plan-status" }, p.status)), p.status === "pending" ? decisionButtons(p.id) : "", ...errs, g, table);
}

// ---- history ----
function renderSessions() {
  const q = $("#search").value.trim().toLowerCase();
  const list = S.sessions.filter((s) => !q || s.id === S.historyId ||
    [s.id, s.role, s.task || ""].some((t) => t.toLowerCase().includes(q)));
  $("#sessions").replaceChildren(...list.map((s) => el("li", { class: s.id === S.historyId ? "on" : "",
    onclick: () => openHistory(s.id) }, `${s.id} (${s.messages})`)));
}
async function openHistory(id) {
  S.historyId = id;
  S.history = (await api("history?session=" + encodeURIComponent(id))).messages;
  renderSessions(); renderMessages();
}
function highlight(text, q) {
  if (!q) return [text];
  const out = [], low = text.toLowerCase();
  let i = 0, j;
  while ((j = low.indexOf(q, i)) >= 0) {
    out.push(text.slice(i, j), el("mark", {}, text.slice(j, j + q.length)));
    i = j + q.length;
  }
  out.push(text.slice(i));
  return out;
}
function messageText(m) {
  if (typeof m.content === "string" && m.content) return m.content;
  if (m.tool_calls) return m.tool_calls.map((c) => `⚙ ${c.function.name} ${c.function.arguments}`).join("\n");
  return JSON.stringify(m.content || "");
}
function renderMessages() {
  const q = $("#search").value.trim().toLowerCase();
  const all = S.history || [];
  const hits = q ? all.filter((m) => messageText(m).toLowerCase().includes(q)) : all;
  const shown = hits.slice(-SHOWN_MESSAGES);
  const frag = document.createDocumentFragment();
  for (const m of shown) frag.append(el("div", { class: "msg" }, el("span", { class: "who" }, m.role),
    ...highlight(messageText(m), q)));
  $("#messages").replaceChildren(frag);
  $("#hits").textContent = S.historyId ? `${hits.length} of ${all.length} messages` +
    (shown.length < hits.length ? ` (the last ${shown.length} shown)` : "") : "";
}

// Matches in every conversation (the broker searches its store).
async function searchAll() {
  const q = $("#search").value.trim();
  if (q.length < 3) { $("#found").replaceChildren(); return; }
  const hits = (await api("search?q=" + encodeURIComponent(q))).filter((h) => h.session !== S.historyId);
  const low = q.toLowerCase();
  $("#found").replaceChildren(el("h2", {}, `In other conversations: ${hits.length}${hits.length >= 200 ? "+" : ""}`),
    ...hits.map((h) => el("div", { class: "msg hit", onclick: () => openHistory(h.session) },
      el("span", { class: "who" }, `${h.session} · ${h.role || ""}`),
      ...highlight(typeof h.content === "string" ? h.content.slice(0, 300) : JSON.stringify(h.content || ""), low))));
}

// ---- costs ----
async function loadCosts() { S.costs = await api("costs"); renderCosts(); }
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#dc2626", "#0891b2", "#be185d", "#4d7c0f"];
function renderCosts() {
  const c = S.costs;
  if (!c) return;
  const by = $("#cost-by").value === "role" ? 2 : 1;
  const series = {}, main = [];
  let total = 0, mainTotal = 0;
  for (const [ts, model, role, cost, mcost] of c.points) {
    const k = by === 1 ? model : role;
    const s = (series[k] = series[k] || { sum: 0, pts: [[ts, 0]] });
    s.sum += cost; s.pts.push([ts, s.sum]);
    total += cost; mainTotal += mcost; main.push([ts, mainTotal]);
  }
  const W = 900, H = 320, L = 60, B = 30, T = 10, R = 160;
  const t0 = c.points.length ? c.points[0][0] : Date.now(), t1 = c.points.length ? c.points[c.points.length - 1][0] : t0 + 1;
  const ymax = Math.max(mainTotal, total, 1e-6);
  const X = (t) => L + (W - L - R) * ((t - t0) / Math.max(1, t1 - t0)), Y = (v) => H - B - (H - B - T) * (v / ymax);
  const g = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "costs-svg" });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    g.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }),
      svg("text", { x: 4, y: Y(v) + 4 }, money(v)));
  }
  g.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
    svg("text", { x: L, y: H - 8 }, new Date(t0).toLocaleTimeString()),
    svg("text", { x: W - R - 60, y: H - 8 }, new Date(t1).toLocaleTimeString()));
  const line = (pts, color, dash) => svg("polyline", { fill: "none", stroke: color, "stroke-width": 2,
    "stroke-dasharray": dash || "", points: pts.map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(" ") });
  let i = 0;
  const legend = (text, color, dash) => {
    const y = T + 14 + 18 * i++;
    g.append(svg("line", { x1: W - R + 10, x2: W - R + 30, y1: y - 4, y2: y - 4, stroke: color, "stroke-width": 2,
      "stroke-dasharray": dash || "" }), svg("text", { x: W - R + 36, y }, text));
  };
  if (main.length) { g.append(line(main, "#94a3b8", "6 4")); legend(`all on ${c.main_model}`, "#94a3b8", "6 4"); }
  Object.entries(series).forEach(([k, s], n) => {
    const color = COLORS[n % COLORS.length];
    s.pts.push([t1, s.sum]); // spent so far: flat to the last turn
    g.append(line(s.pts, color)); legend(`${k} ${money(s.sum)}`, color);
  });
  $("#cost-plot").replaceChildren(g);
  $("#saving").textContent = c.points.length ? `spent ${money(total)}; on ${c.main_model} alone ${money(mainTotal)}: ` +
    `saved ${money(mainTotal - total)} (${mainTotal > 0 ? Math.round(100 * (1 - total / mainTotal)) : 0}%)` : "no turn yet";
}

// ---- pages and events ----
const loaders = { nodes: loadNodes, agents: loadAgents, plans: loadPlans, history: loadAgents, costs: loadCosts };
function show(page) {
  S.page = loaders[page] ? page : "agents";
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("on", p.id === "page-" + S.page));
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("on", a.dataset.page === S.page));
  loaders[S.page]().catch(report);
}
function report(e) { console.error(e); }
const refresh = {
  nodes: debounce(() => loadNodes().catch(report), 250),
  agents: debounce(() => loadAgents().catch(report), 250),
  plans: debounce(() => loadPlans().catch(report), 250),
  costs: debounce(() => S.page === "costs" && loadCosts().catch(report), 500),
};
function onEvent(m) {
  if (m.type === "delta") return onDelta(m);
  const k = m.kind || "";
  if (k.startsWith("node_") || k === "turn_started" || k === "turn_done" || k === "turn_failed") refresh.nodes();
  if (k.startsWith("agent_") || k.startsWith("turn_") || k === "summary") refresh.agents();
  if (k.startsWith("plan_") || k.startsWith("workflow_") || k.startsWith("step_")) refresh.plans();
  if (k === "turn_done" || k === "turn_failed") refresh.costs();
  if (k === "turn_started" && m.session) onDelta({ session: m.session, kind: "text", text: "\n" });
  if ((k === "turn_done") && m.session === S.historyId && S.page === "history") openHistory(S.historyId).catch(report);
}
function reloadAll() { for (const f of [loadNodes, loadAgents, loadPlans]) f().catch(report); }
function connect() {
  const es = new EventSource("/api/events");
  const live = (on) => { $("#live").className = on ? "on" : "off"; $("#live").textContent = on ? "live" : "offline"; };
  es.addEventListener("hello", () => { live(true); reloadAll(); });
  es.onmessage = (e) => onEvent(JSON.parse(e.data));
  es.onerror = () => live(false); // EventSource connects again by itself
  es.addEventListener("dropped", () => { es.close(); live(false); setTimeout(connect, 1000); });
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
$("#search").addEventListener("input", debounce(() => { renderSessions(); renderMessages(); searchAll(); }, 250));
$("#cost-by").addEventListener("change", renderCosts);
show(location.hash.slice(1) || "agents");
connect();
