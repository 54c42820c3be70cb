// The desk page: one snapshot from /api/state, then live `state` events from /events (server-sent events).
"use strict";
(function () {
  const SEV = { critical: "严重", warning: "预警", info: "提示" };
  const STATE = { firing: "告警中", acknowledged: "已确认" };
  const EVENT = { firing: "告警", escalated: "升级", repeat: "持续", resolved: "恢复", acknowledged: "确认" };
  const DELIVERY = { delivered: "已送达", queued: "排队", retrying: "重试中", failed: "已放弃" };
  const COLOR = { normal: "#2e7d32", warning: "#ef6c00", critical: "#c62828", info: "#1565c0", acknowledged: "#6a1b9a",
                  stale: "#757575" };
  let csrf = "", map = null, markers = {}, fitted = false, seenCritical = null, audio = null, pending = null;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return e;
  }
  let zone = "Asia/Shanghai";
  const time = (ms) => ms == null ? "—" : new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: zone });
  const fact = (a, key) => (a.facts.find((f) => f.key === key) || {}).text;

  const hhmm = (ms) => new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: zone, hour: "2-digit", minute: "2-digit" });
  let now = Date.now(), live = {};

  // The time left counts from now to the predicted moment: an ETA whose moment has passed is overdue, never
  // "less than a minute"; an ETA rule's prediction is the rules' current one; a gauge without recent readings
  // (an alert restored at start, a sensor gone quiet) has no ETA to show.
  function etaText(a, l) {
    if (l && l.stale) return l.reading_ms == null ? "无读数（启动后未收到）" : "数据过期（最后读数 " + hhmm(l.reading_ms) + "）";
    let eta = a.eta_s, due = a.eta_due_ms;
    if (l && a.eta_rule && l.value != null && l.reading_ms != null) { eta = l.value; due = l.reading_ms + l.value * 1000; }
    if (eta == null || due == null) return a.severity === "critical" && a.flood ? "已达到" : "—";
    if (eta <= 0) return "已达到";
    const left = due - now;
    if (left <= 0) return "已超过（" + hhmm(due) + "）";
    const m = Math.round(left / 60000);
    return (m < 1 ? "不足 1 分钟" : m + " 分钟") + "（" + hhmm(due) + "）";
  }

  function stateText(a, l) {
    let text = a.acked_by ? "已确认（" + a.acked_by + "）" + (a.ack_comment ? "：" + a.ack_comment : "")
      : (a.held_back_by ? "已静默" : STATE[a.state] || a.state);
    if (l && l.clearing_ms != null) text += " · 已回落（" + hhmm(l.clearing_ms) + " 起）";
    return text;
  }

  function renderAlerts(alerts) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren(...alerts.map((a) => {
      const l = live[a.fingerprint];
      const depth = a.depth_rule && l && l.value != null && !l.stale ? l.value : a.depth_mm;  // the gauge now
      const measured = depth != null ? (depth / 10).toFixed(1) + " cm" : a.value_text;
      const ack = el("button", { type: "button", class: "ack", disabled: !!a.acked_by }, "确认");
      ack.addEventListener("click", () => openAction("ack", a));
      const sil = el("button", { type: "button", class: "silence" }, "静默");
      sil.addEventListener("click", () => openAction("silence", a));
      const untold = a.untold ? el("strong", { class: "untold", title: "没有路由到任何接收方：值守台之外无人知道" }, "未通知任何人") : "";
      return el("tr", { class: a.severity + (a.acked_by ? " acknowledged" : "") + (l && l.stale ? " stale" : "")
                        + (a.untold ? " untold" : ""), "data-fingerprint": a.fingerprint,
                        "data-rule": a.rule_id, "data-device": a.device_id },
        el("td", {}, el("span", { class: "sev " + a.severity }, SEV[a.severity] || a.severity)),
        el("td", { title: a.rule_id }, a.place || a.device_id, el("br"), el("small", {}, a.device_id + " · " + a.rule_id)),
        el("td", { class: "depth", title: a.quantity + " " + a.value_text + "（告警时）" }, measured),
        el("td", { class: "rate" }, a.rise_cm_h == null ? "—" : (a.rise_cm_h > 0 ? "+" : "") + a.rise_cm_h.toFixed(1) + " cm/h"),
        el("td", { class: "eta" }, etaText(a, l)),
        el("td", {}, time(a.since_ms)),
        el("td", { class: "case" }, a.case_id || (a.case_key ? "待受理" : "—")),
        el("td", { class: "state" }, stateText(a, l), untold ? el("br") : "", untold),
        el("td", {}, ack, " ", sil));
    }));
    document.getElementById("none").hidden = alerts.length > 0;
    document.getElementById("count").textContent = alerts.length ? "（" + alerts.length + "）" : "";
  }

  // a gauge whose every active alert has no recent reading is painted as unknown, not as a live flood
  function staleGauges(alerts) {
    const fresh = new Set(), out = new Set();
    for (const a of alerts) {
      const l = live[a.fingerprint];  // (none for a rule without a value: device silent, data quality)
      if (l) (l.stale ? out : fresh).add(a.device_id);
    }
    for (const id of fresh) out.delete(id);
    return out;
  }

  function renderMap(gauges, tiles, stale) {
    if (!map) {
      map = L.map("map", { zoomControl: true, attributionControl: !!tiles.url });
      if (tiles.url) L.tileLayer(tiles.url, { attribution: tiles.attribution || "", maxZoom: 19 }).addTo(map);
      map.setView([39.9, 116.4], 11);
    }
    const seen = new Set();
    for (const g of gauges) {
      seen.add(g.device_id);
      const state = g.state !== "normal" && stale.has(g.device_id) ? "stale" : g.state;
      const style = { radius: 9, weight: 2, color: "#fff", fillColor: COLOR[state] || COLOR.normal, fillOpacity: 0.95 };
      let m = markers[g.device_id];
      if (!m) {
        m = markers[g.device_id] = L.circleMarker([g.lat, g.lon], style).addTo(map);
        m.bindTooltip(g.device_id + " " + (g.place || ""));
      } else m.setStyle(style);
      m.getElement && m.getElement() && m.getElement().setAttribute("data-state", state);
    }
    for (const id of Object.keys(markers)) if (!seen.has(id)) { markers[id].remove(); delete markers[id]; }
    if (!fitted && gauges.length) {
      map.fitBounds(L.latLngBounds(gauges.map((g) => [g.lat, g.lon])).pad(0.3), { maxZoom: 15 });
      fitted = true;
    }
  }

  function renderUntold(alerts) {
    const n = alerts.filter((a) => a.untold).length, box = document.getElementById("untold");
    box.hidden = n === 0;
    box.textContent = n ? n + " 条活动告警没有通知任何人：没有路由到接收方（[alerts] routes / receivers），值守台之外无人知道" : "";
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
    now = state.now_ms || Date.now();
    live = state.live || {};
    renderAlerts(state.alerts);
    renderUntold(state.alerts);
    renderMap(state.gauges, window.deskTiles || {}, staleGauges(state.alerts));
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
    // a snapshot is pushed on changes only: refresh now and then, so that time-left, overdue and stale stay true
    setInterval(async () => {
      const r = await fetch("/api/state", { credentials: "same-origin" }).catch(() => null);
      if (r && r.ok) apply(await r.json());
    }, 30000);
    const liveBadge = document.getElementById("live");
    const es = new EventSource("/events");
    es.addEventListener("state", (e) => { apply(JSON.parse(e.data)); });
    es.onopen = () => { liveBadge.textContent = "实时"; liveBadge.classList.remove("off"); };
    es.onerror = async () => {
      liveBadge.textContent = "重连中…"; liveBadge.classList.add("off");
      const check = await fetch("/api/state", { credentials: "same-origin" }).catch(() => null);
      if (check && check.status === 401) location.href = "/login";
    };
  }

  document.getElementById("action-form").addEventListener("submit", submitAction);
  document.getElementById("action-cancel").addEventListener("click", () => document.getElementById("action").close());
  document.getElementById("sound").addEventListener("click", beep);
  start();
})();
