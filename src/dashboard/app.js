// maas-flow dashboard: refreshes the summary and the visible page of machines from the
// JSON API every few seconds and updates the table in place (rows keyed by system_id,
// text set with textContent only), so the scroll position and the search box survive.
"use strict";
const PAGE = 200;
const STUCK_AFTER_S = Number(document.body.dataset.stuckAfter || 3600);
const TRANSITIONAL = JSON.parse(document.body.dataset.transitional || "[]");
let cursors = [null];
let pageIdx = 0;
let nextAfter = null;
const $ = (id) => document.getElementById(id);

function age(m) {
  const t = m.transitions && m.transitions.length ? Date.parse(m.transitions[m.transitions.length - 1][1]) : NaN;
  if (isNaN(t)) return [null, ""];
  const s = Math.max(0, (Date.now() - t) / 1000);
  const h = Math.floor(s / 3600), mi = Math.floor((s % 3600) / 60), se = Math.floor(s % 60);
  return [s, h ? `${h}h${String(mi).padStart(2, "0")}m` : mi ? `${mi}m${String(se).padStart(2, "0")}s` : `${se}s`];
}

function rowClass(m, secs) {
  const stuck = secs !== null && secs > STUCK_AFTER_S &&
    (TRANSITIONAL.includes(m.status) || m.provisioning === "running");
  const base = m.problem ? "problem" : m.settled ? "settled" : (m.action_in_flight || m.provisioning === "running") ? "active" : "waiting";
  return stuck ? base + " stuck" : base;
}

function cells(m) {
  const [secs, text] = age(m);
  return {
    cls: rowClass(m, secs),
    values: [m.hostname, m.system_id, m.zone, m.status, text, m.step, m.provisioning,
      m.action_in_flight || "", String(m.attempts), m.next_retry || "", m.last_error || "",
      m.profile || ""],
  };
}

function renderRows(ms) {
  const body = $("rows");
  const existing = new Map();
  for (const tr of Array.from(body.rows)) existing.set(tr.dataset.id, tr);
  let prev = null;
  for (const m of ms) {
    let tr = existing.get(m.system_id);
    existing.delete(m.system_id);
    const c = cells(m);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = m.system_id;
      c.values.forEach((_, i) => {
        const td = document.createElement("td");
        if (i === 4) td.className = "age";
        if (i === 10) td.className = "err";
        tr.appendChild(td);
      });
    }
    if (tr.className !== c.cls) tr.className = c.cls;
    c.values.forEach((v, i) => { if (tr.cells[i].textContent !== v) tr.cells[i].textContent = v; });
    const want = prev ? prev.nextSibling : body.firstChild;
    if (want !== tr) body.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

function setText(id, v) { const e = $(id); if (e && e.textContent !== String(v)) e.textContent = String(v); }

function renderSummary(st) {
  const s = st.summary || {};
  setText("at-target", s.at_target);
  setText("total", s.machines);
  setText("problems", s.problems);
  setText("in-flight", s.in_flight);
  setText("queued", s.queued);
  setText("lists", `lists ok ${st.polls_ok}, failed ${st.polls_failed}` +
    (st.consecutive_failures ? ` (${st.consecutive_failures} in a row)` : ""));
  setText("last-list", st.last_poll_ok || "never");
  setText("last-error", st.last_poll_error ? `last list error: ${st.last_poll_error}` : "");
  if (st.role !== undefined) setText("role", st.role);
  if (st.identity) setText("leader", st.leader || "none");
  const steps = $("steps");
  const sel = $("step");
  const want = Object.keys(s.steps || {});
  for (const k of want) {
    let chip = steps.querySelector(`[data-step="${CSS.escape(k)}"]`);
    if (!chip) {
      chip = document.createElement("span");
      chip.className = "chip";
      chip.dataset.step = k;
      chip.appendChild(document.createTextNode(k + " "));
      chip.appendChild(document.createElement("b"));
      chip.onclick = () => { sel.value = sel.value === k ? "" : k; restart(); };
      steps.appendChild(chip);
    }
    chip.lastChild.textContent = String(s.steps[k]);
    chip.classList.toggle("sel", sel.value === k);
    if (![...sel.options].some((o) => o.value === k)) {
      const o = document.createElement("option");
      o.value = k; o.textContent = k; sel.appendChild(o);
    }
  }
  for (const chip of Array.from(steps.children)) if (!want.includes(chip.dataset.step)) chip.remove();
}

function query() {
  const p = new URLSearchParams({ limit: String(PAGE) });
  if (cursors[pageIdx]) p.set("after", cursors[pageIdx]);
  const q = $("search").value.trim();
  if (q) p.set("q", q);
  if ($("step").value) p.set("step", $("step").value);
  if ($("only-problems").checked) p.set("problems", "true");
  return p;
}

async function refresh() {
  try {
    const [st, r] = await Promise.all([fetch("/api/v1/status").then((x) => x.json()), fetch("/api/v1/machines?" + query())]);
    renderSummary(st);
    if (!r.ok) return;
    const ms = await r.json();
    const link = r.headers.get("Link") || "";
    const m = /[?&]after=([^&>]*)/.exec(link);
    nextAfter = m ? decodeURIComponent(m[1].replace(/\+/g, " ")) : null;
    const total = Number(r.headers.get("X-Total-Count") || ms.length);
    renderRows(ms);
    const from = pageIdx * PAGE;
    setText("page-info", total ? `${from + 1}-${from + ms.length} of ${total}` : "no machines match");
    $("prev").disabled = pageIdx === 0;
    $("next").disabled = !nextAfter;
    setText("updated", "updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setText("updated", "cannot reach maas-flow: " + e);
  }
}

function restart() { cursors = [null]; pageIdx = 0; refresh(); }

$("search").addEventListener("input", () => { clearTimeout(window._q); window._q = setTimeout(restart, 250); });
$("step").addEventListener("change", restart);
$("only-problems").addEventListener("change", restart);
$("problems-chip").addEventListener("click", () => { $("only-problems").checked = !$("only-problems").checked; restart(); });
$("next").addEventListener("click", () => { if (nextAfter) { cursors[pageIdx + 1] = nextAfter; pageIdx++; refresh(); } });
$("prev").addEventListener("click", () => { if (pageIdx > 0) { pageIdx--; refresh(); } });
refresh();
setInterval(refresh, 5000);
