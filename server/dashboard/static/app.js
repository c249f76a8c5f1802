// The dashboard page: polls the registry's read-only JSON API and renders it.
// The token comes from the URL fragment (#token=…), which is never sent to a server,
// and is kept in sessionStorage for reloads of this tab only.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll_ms")) || 2000;
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("ota-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    // style through the CSSOM: the page's CSP refuses inline style attributes.
    if (k === "class") e.className = v; else if (k === "title") e.title = v;
    else if (k === "style") Object.assign(e.style, v); else e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}
const fmt = (n) => Number(n || 0).toLocaleString("en-US");
const ago = (rfc3339) => {
  if (!rfc3339) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(rfc3339)) / 1000);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
};
const utc = (rfc3339) => rfc3339.replace("T", " ").slice(0, 19);

async function api(path) {
  const token = sessionStorage.getItem("ota-token") || "";
  const r = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: "no-store" });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw Object.assign(new Error(body.error || `HTTP ${r.status}`), { status: r.status, path });
  return body;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderVehicles(vs) {
  document.getElementById("fleet-count").textContent = `(${vs.length})`;
  fill(document.querySelector("#vehicles tbody"), vs.map((v) => {
    const rep = v.last_report;
    return el("tr", { "data-vehicle": v.vehicle_id },
      el("td", { class: "mono" }, v.vehicle_id),
      el("td", {}, v.hardware_id),
      el("td", {}, v.tags.map((t) => el("span", { class: "tag", "data-tag": t, title: "filter by this tag" }, t))),
      el("td", {}, v.models.map((m) => el("div", {}, `${m.model} ${m.installed_version || "–"}`,
        m.active_version && m.active_version !== m.installed_version
          ? el("span", { class: "muted" }, ` (active ${m.active_version})`) : ""))),
      el("td", {}, rep ? [el("span", { class: `st-${rep.status}` }, rep.status), " ", `${rep.model} ${rep.version}`,
        rep.reason ? el("div", { class: "muted" }, rep.reason) : ""] : el("span", { class: "muted" }, "none")),
      el("td", { class: "mono" }, v.campaigns.join(" ")),
      el("td", { title: v.last_seen || "" }, ago(v.last_seen)));
  }));
}

function renderCampaigns(cs) {
  document.getElementById("campaign-count").textContent = `(${cs.length})`;
  const box = document.getElementById("campaigns");
  if (!cs.length) { box.replaceChildren(el("p", { class: "muted" }, "no campaigns yet")); return; }
  box.replaceChildren(...cs.slice().reverse().map((c) => {
    const spec = c.spec, needConfirmed = spec.require_confirmed;
    const waves = el("table", { class: "waves" }, el("thead", {}, el("tr", {},
      ["wave", "progress", "ok", "need", "in flight", "pending", "failed", "timed out", "state"].map((h, i) =>
        el("th", i >= 2 && i <= 7 ? { class: "num" } : {}, h)))),
      el("tbody", {}, c.waves.map((w) => {
        const ok = Number(w.confirmed) + (needConfirmed ? 0 : Number(w.installed));
        const bad = Number(w.failed) + Number(w.timed_out);
        const pct = w.size ? Math.round((100 * ok) / w.size) : 0;
        return el("tr", { "data-wave": w.index },
          el("td", {}, `${w.index} (${w.percent}%)`),
          el("td", {}, el("span", { class: bad ? "bar bad" : "bar", title: `${pct}%` }, el("span", { style: { width: `${pct}%` } }))),
          el("td", { class: "num wave-ok" }, `${ok}/${w.size}`), el("td", { class: "num" }, `${Math.round(100 * w.success_share)}%`),
          el("td", { class: "num" }, w.in_flight), el("td", { class: "num" }, w.pending),
          el("td", { class: "num st-failed" }, w.failed || ""), el("td", { class: "num st-timed_out" }, w.timed_out || ""),
          el("td", {}, w.state));
      })));
    const failures = c.failures.length ? el("table", { class: "failures" },
      el("thead", {}, el("tr", {}, ["status", "vehicles", "reason", "e.g."].map((h) => el("th", {}, h)))),
      el("tbody", {}, c.failures.map((f) => el("tr", {}, el("td", { class: `st-${f.status}` }, f.status),
        el("td", { class: "num" }, f.count), el("td", {}, f.reason), el("td", { class: "mono" }, f.vehicle_ids.slice(0, 3).join(", ")))))) : "";
    // Who did what: the certificate identity of each operator action, "registry" for derived steps.
    const history = (c.events || []).length ? el("table", { class: "history" },
      el("thead", {}, el("tr", {}, ["time (UTC)", "event", "wave", "by", "detail"].map((h) => el("th", {}, h)))),
      el("tbody", {}, c.events.map((e) => {
        let d = {};
        try { d = e.detail ? JSON.parse(e.detail) : {}; } catch (_) { d = { reason: e.detail }; }
        return el("tr", { "data-event": e.kind },
          el("td", {}, new Date(Number(e.at) * 1000).toISOString().replace("T", " ").slice(0, 19)),
          el("td", {}, e.kind), el("td", { class: "num" }, Number(e.wave) >= 0 ? e.wave : ""),
          el("td", { class: "mono event-actor" }, e.actor || "–"),
          el("td", { class: "muted" }, [d.reason, d.rollback ? `rollback ${d.rollback}` : ""].filter(Boolean).join("; ")));
      }))) : "";
    return el("div", { class: "campaign", "data-campaign": c.campaign_id },
      el("h3", {}, el("span", { class: "mono" }, c.campaign_id), ` ${spec.name} — ${spec.model} ${spec.version} `,
        el("span", { class: `state state-${c.state}` }, c.state), el("span", { class: "muted" }, ` ${c.vehicles} vehicles`)),
      c.state_reason ? el("div", { class: "muted" }, `reason: ${c.state_reason}`) : "",
      waves, failures ? el("h3", {}, "failures, grouped by reason") : "", failures,
      history ? el("h3", {}, "history") : "", history);
  }));
}

function renderModels(ms) {
  fill(document.querySelector("#models tbody"), ms.map((m) => el("tr", { "data-model": `${m.name} ${m.version}` },
    el("td", {}, m.name), el("td", {}, m.version), el("td", { class: "num" }, fmt(m.length)),
    el("td", { class: "mono", title: m.sha256 }, m.sha256.slice(0, 12)), el("td", {}, m.hardware_ids.join(", ") || "any"),
    el("td", {}, m.encodings.map((e) => el("div", { class: "encoding" },
      `${e.codec}${e.base_version ? ` from ${e.base_version}` : ""}: ${fmt(e.length)} B`))),
    el("td", {}, m.published_at))));
}

function renderAudit(rows) {
  fill(document.querySelector("#audit tbody"), rows.map((a) => el("tr", {},
    el("td", {}, utc(a.create_time)), el("td", { class: "mono" }, a.actor), el("td", {}, a.action),
    el("td", { class: "mono" }, Object.entries(a.arguments).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")))));
}

let filter = "";
async function refresh() {
  const status = document.getElementById("status");
  try {
    const [vs, cs, ms, au] = await Promise.all([
      api(`/api/vehicles?filter=${encodeURIComponent(filter)}`).catch((e) => {
        if (e.status === 400) { document.getElementById("filter-error").textContent = e.message; return null; }
        throw e;
      }),
      api("/api/campaigns"), api("/api/models"), api("/api/audit?limit=200")]);
    if (vs) { document.getElementById("filter-error").textContent = ""; renderVehicles(vs); }
    renderCampaigns(cs); renderModels(ms); renderAudit(au);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "status";
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    status.textContent = e.message;
    status.className = "status bad";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("filter");
  document.getElementById("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); filter = input.value.trim(); refresh();
  });
  document.getElementById("filter-clear").addEventListener("click", () => { input.value = ""; filter = ""; refresh(); });
  document.getElementById("vehicles").addEventListener("click", (ev) => {
    const t = ev.target.closest(".tag");
    if (!t) return;
    const [k, ...v] = t.dataset.tag.split("=");
    input.value = `tags.${k} = "${v.join("=")}"`; filter = input.value; refresh();
  });
  refresh();
  setInterval(refresh, POLL_MS);
});
