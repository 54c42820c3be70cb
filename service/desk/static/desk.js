// The desk page: one snapshot from /api/state, then live `state` events from /events (server-sent events).
"use strict";
(function () {
  const SEV = { critical: "严重", warning: "预警", info: "提示" };
  const STATE = { firing: "告警中", acknowledged: "已确认" };
  const EVENT = { firing: "告警", escalated: "升级", repeat: "持续", resolved: "恢复", acknowledged: "确认" };
  const DELIVERY = { delivered: "已送达", queued: "排队", retrying: "重试中", failed: "已放弃" };
  const COLOR = { normal: "#2e7d32", warning: "#ef6c00", critical: "#c62828", info: "#1565c0", acknowledged: "#6a1b9a" };
  let csrf = "", map = null, markers = {}, fitted = false, seenCritical = null, audio = null, pending = null;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return e;
  }
  // Leaflet takes some texts (the attribution) only as HTML: anything configured or device-provided goes in escaped
  const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  let zone = "Asia/Shanghai";
  const time = (ms) => ms == null ? "—" : new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: zone });
  const fact = (a, key) => (a.facts.find((f) => f.key === key) || {}).text;

  function etaText(a) {
    if (a.eta_s == null) return a.severity === "critical" && a.flood ? "已达到" : "—";
    if (a.eta_s <= 0) return "已达到";
    const m = Math.round(a.eta_s / 60);
    return (m < 1 ? "不足 1 分钟" : m + " 分钟") + (a.eta_at ? "（" + a.eta_at.split("（")[0] + "）" : "");
  }

  function renderAlerts(alerts) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren(...alerts.map((a) => {
      const measured = a.depth_mm != null ? (a.depth_mm / 10).toFixed(1) + " cm" : a.value_text;
      const ack = el("button", { type: "button", class: "ack", disabled: !!a.acked_by }, "确认");
      ack.addEventListener("click", () => openAction("ack", a));
      const sil = el("button", { type: "button", class: "silence" }, "静默");
      sil.addEventListener("click", () => openAction("silence", a));
      const state = a.acked_by ? "已确认（" + a.acked_by + "）" + (a.ack_comment ? "：" + a.ack_comment : "")
        : (a.held_back_by ? "已静默" : STATE[a.state] || a.state);
      return el("tr", { class: a.severity + (a.acked_by ? " acknowledged" : ""), "data-fingerprint": a.fingerprint,
                        "data-rule": a.rule_id, "data-device": a.device_id },
        el("td", {}, el("span", { class: "sev " + a.severity }, SEV[a.severity] || a.severity)),
        el("td", { title: a.rule_id }, a.place || a.device_id, el("br"), el("small", {}, a.device_id + " · " + a.rule_id)),
        el("td", { class: "depth", title: a.quantity + " " + a.value_text }, measured),
        el("td", { class: "rate" }, a.rise_cm_h == null ? "—" : (a.rise_cm_h > 0 ? "+" : "") + a.rise_cm_h.toFixed(1) + " cm/h"),
        el("td", { class: "eta" }, etaText(a)),
        el("td", {}, time(a.since_ms)),
        el("td", { class: "case" }, a.case_id || (a.case_key ? "待受理" : "—")),
        el("td", { class: "state" }, state),
        el("td", {}, ack, " ", sil));
    }));
    document.getElementById("none").hidden = alerts.length > 0;
    document.getElementById("count").textContent = alerts.length ? "（" + alerts.length + "）" : "";
  }

  function renderMap(gauges, tiles) {
    if (!map) {
      map = L.map("map", { zoomControl: true, attributionControl: !!tiles.url });
      if (tiles.url) L.tileLayer(tiles.url, { attribution: escapeHtml(tiles.attribution || ""), maxZoom: 19 }).addTo(map);
      map.setView([39.9, 116.4], 11);
    }
    const seen = new Set();
    for (const g of gauges) {
      seen.add(g.device_id);
      const style = { radius: 9, weight: 2, color: "#fff", fillColor: COLOR[g.state] || COLOR.normal, fillOpacity: 0.95 };
      let m = markers[g.device_id];
      if (!m) {
        m = markers[g.device_id] = L.circleMarker([g.lat, g.lon], style).addTo(map);
        m.bindTooltip(el("span", { class: "tip" }));  // a node, never a string: Leaflet renders a string as HTML
      } else m.setStyle(style);
      m.getTooltip().getContent().textContent = g.device_id + " " + (g.place || "");
      m.getElement && m.getElement() && m.getElement().setAttribute("data-state", g.state);
    }
    for (const id of Object.keys(markers)) if (!seen.has(id)) { markers[id].remove(); delete markers[id]; }
    if (!fitted && gauges.length) {
      map.fitBounds(L.latLngBounds(gauges.map((g) => [g.lat, g.lon])).pad(0.3), { maxZoom: 15 });
      fitted = true;
    }
  }

  function renderNotifications(rows) {
    document.querySelector("#notifications tbody").replaceChildren(...rows.map((n) =>
      el("tr", { "data-receiver": n.receiver, "data-status": n.status },
        el("td", {}, time(n.created_ms)), el("td", {}, n.receiver), el("td", {}, EVENT[n.event] || n.event),
        el("td", {}, n.rule_id + " · " + n.device_id),
        el("td", { class: "status-" + n.status, title: n.error || "" },
           (DELIVERY[n.status] || n.status) + (n.attempts > 1 ? "（" + n.attempts + " 次）" : "")))));
  }

  function cue(alerts) {
    const critical = alerts.filter((a) => a.severity === "critical" && !a.acked_by).map((a) => a.fingerprint);
    if (seenCritical !== null) {
      const fresh = critical.filter((fp) => !seenCritical.has(fp));
      if (fresh.length) {
        const box = document.getElementById("cue");
        box.hidden = false;
        document.title = "【严重告警】应急值守台";
        beep();
        clearTimeout(cue.timer);
        cue.timer = setTimeout(() => { box.hidden = true; document.title = "应急值守台 · urbansense"; }, 30000);
      }
    }
    seenCritical = new Set(critical);
  }

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      for (let i = 0; i < 3; i++) {
        const o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = 880; o.connect(g); g.connect(audio.destination);
        const t = audio.currentTime + i * 0.35;
        g.gain.setValueAtTime(0.3, t); g.gain.setValueAtTime(0, t + 0.2);
        o.start(t); o.stop(t + 0.25);
      }
      document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
    } catch (e) { /* no audio device: the visible cue still shows */ }
  }

  function apply(state) {
    renderAlerts(state.alerts);
    renderMap(state.gauges, window.deskTiles || {});
    renderNotifications(state.notifications);
    cue(state.alerts);
    document.body.dataset.updated = String(state.now_ms);
  }

  function openAction(kind, a) {
    pending = { kind, a };
    document.getElementById("action-title").textContent = (kind === "ack" ? "确认告警：" : "静默告警：") + a.device_id + " · " + a.rule_id;
    document.getElementById("action-minutes-row").hidden = kind !== "silence";
    document.getElementById("action-error").textContent = "";
    document.getElementById("action-comment").value = "";
    document.getElementById("action").showModal();
  }

  async function submitAction(ev) {
    ev.preventDefault();
    const { kind, a } = pending;
    const body = { comment: document.getElementById("action-comment").value };
    if (kind === "silence") body.minutes = Number(document.getElementById("action-minutes").value);
    const r = await fetch("/api/alerts/" + encodeURIComponent(a.fingerprint) + "/" + kind, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
    if (r.status === 401) { location.href = "/login"; return; }
    if (!r.ok) { document.getElementById("action-error").textContent = await r.text(); return; }
    document.getElementById("action").close();
  }

  async function start() {
    const r = await fetch("/api/state", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; return; }
    const state = await r.json();
    csrf = state.csrf;
    zone = state.timezone || zone;
    window.deskTiles = state.tiles;
    document.getElementById("user").textContent = state.user;
    const logout = document.getElementById("logout");
    logout.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
      location.href = "/login";
    });
    apply(state);
    const live = document.getElementById("live");
    const es = new EventSource("/events");
    es.addEventListener("state", (e) => { apply(JSON.parse(e.data)); });
    es.onopen = () => { live.textContent = "实时"; live.classList.remove("off"); };
    es.onerror = async () => {
      live.textContent = "重连中…"; live.classList.add("off");
      const check = await fetch("/api/state", { credentials: "same-origin" }).catch(() => null);
      if (check && check.status === 401) location.href = "/login";
    };
  }

  document.getElementById("action-form").addEventListener("submit", submitAction);
  document.getElementById("action-cancel").addEventListener("click", () => document.getElementById("action").close());
  document.getElementById("sound").addEventListener("click", beep);
  start();
})();
