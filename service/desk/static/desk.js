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
  // Leaflet takes some texts (the attribution) only as HTML: anything configured or device-provided goes in escaped
  const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  let zone = "Asia/Shanghai";
  const time = (ms) => ms == null ? "—" : new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: zone });
  const fact = (a, key) => (a.facts.find((f) => f.key === key) || {}).text;

  // the server's clock, for ages and for ETAs that have passed since the snapshot
  let skew = 0;
  const now = () => Date.now() - skew;
  const hhmm = (ms) => new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, hour: "2-digit", minute: "2-digit", timeZone: zone });
  function age(ms) {
    const s = Math.max(0, Math.round((now() - ms) / 1000));
    return s < 60 ? s + " 秒前" : s < 3600 ? Math.floor(s / 60) + " 分钟前" : Math.floor(s / 3600) + " 小时前";
  }

  // no reading within the gauge's expected interval × silent_factor, or none since start (an alert restored
  // from the store): nothing live to show — neither its depth nor an ETA — only when it last reported
  const isStale = (l) => !!l && (l.reading_ms == null || now() - l.reading_ms > l.stale_after_ms);

  // the gauge now: the rules engine's newest reading (live), else the values of the alert's last transition
  function measure(a, live) {
    if (isStale(live)) {
      const last = live.reading_ms == null ? "启动后无读数" : "最后读数 " + time(live.reading_ms) + "（" + age(live.reading_ms) + "）";
      return { depth_mm: live.reading_ms == null ? a.depth_mm : live.depth_mm, rise_cm_h: null, eta_s: null,
               eta_at_ms: null, note: "数据过期：" + last, last, live: false, stale: true };
    }
    if (live) return { clearing_ms: live.clearing_ms, depth_mm: live.depth_mm, rise_cm_h: live.rise_cm_h, eta_s: live.eta_s, eta_at_ms: live.eta_at_ms,
                       note: "读数 " + time(live.reading_ms) + "（" + age(live.reading_ms) + "）", live: true };
    return { depth_mm: a.depth_mm, rise_cm_h: a.rise_cm_h, eta_s: a.eta_s, eta_at_ms: a.eta_at_ms,
             note: "告警变化时 " + time(a.updated_ms) + " 的值（" + age(a.updated_ms) + "）", live: false };
  }

  function etaText(a, m) {
    if (m.stale) return "数据过期（" + m.last + "）";
    if (m.eta_s == null) return m.depth_mm != null && m.depth_mm >= 270 || (!m.live && a.severity === "critical" && a.flood) ? "已达到" : "—";
    if (m.eta_s <= 0) return "已达到";
    if (m.eta_at_ms != null && m.eta_at_ms <= now()) return "预计时刻 " + hhmm(m.eta_at_ms) + " 已过，无新读数";
    const left = m.eta_at_ms != null ? (m.eta_at_ms - now()) / 1000 : m.eta_s;
    const min = Math.round(left / 60);
    return (min < 1 ? "不足 1 分钟" : min + " 分钟") + (m.eta_at_ms != null ? "（" + hhmm(m.eta_at_ms) + "）" : "");
  }

  function stateText(a, silence, m) {
    const fallen = m.clearing_ms != null ? " · 已回落（" + hhmm(m.clearing_ms) + " 起）" : "";  // keep_firing_for runs
    if (a.acked_by) return "已确认（" + a.acked_by + "）" + (a.ack_comment ? "：" + a.ack_comment : "") + fallen;
    if (silence) return "静默至 " + hhmm(silence.until_ms) + "（" + silence.by + "：" + silence.comment + "）" + fallen;
    return (a.held_back_by ? "已静默" : STATE[a.state] || a.state) + fallen;
  }

  function renderAlerts(alerts, live, silences) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren(...alerts.map((a) => {
      const m = measure(a, live[a.fingerprint]);
      const silence = silences[a.fingerprint];
      const measured = m.depth_mm != null ? (m.depth_mm / 10).toFixed(1) + " cm" : a.value_text;
      const ack = el("button", { type: "button", class: "ack", disabled: !!a.acked_by }, "确认");
      ack.addEventListener("click", () => openAction("ack", a));
      const sil = el("button", { type: "button", class: "silence" }, "静默");
      sil.addEventListener("click", () => openAction("silence", a));
      const state = stateText(a, silence, m);
      const untold = a.untold ? el("strong", { class: "untold", title: "没有路由到任何接收方：值守台之外无人知道" }, "未通知任何人") : "";
      return el("tr", { class: a.severity + (a.acked_by ? " acknowledged" : silence ? " silenced" : "")
                        + (m.stale ? " stale" : "") + (a.untold ? " untold" : ""),
                        "data-fingerprint": a.fingerprint, "data-live": m.live ? "1" : "0",
                        "data-rule": a.rule_id, "data-device": a.device_id },
        el("td", {}, el("span", { class: "sev " + a.severity }, SEV[a.severity] || a.severity)),
        el("td", { title: a.rule_id }, a.place || a.device_id, el("br"), el("small", {}, a.device_id + " · " + a.rule_id)),
        el("td", { class: "depth", title: a.quantity + " " + a.value_text }, measured, el("br"),
           el("small", { class: "age" }, m.note)),
        el("td", { class: "rate" }, m.rise_cm_h == null ? "—" : (m.rise_cm_h > 0 ? "+" : "") + m.rise_cm_h.toFixed(1) + " cm/h"),
        el("td", { class: "eta" }, etaText(a, m)),
        el("td", {}, time(a.since_ms)),
        el("td", { class: "case" }, a.case_id || (a.case_key ? "待受理" : "—")),
        el("td", { class: "state" }, state, untold ? el("br") : "", untold),
        el("td", {}, ack, " ", sil));
    }));
    document.getElementById("none").hidden = alerts.length > 0;
    document.getElementById("count").textContent = alerts.length ? "（" + alerts.length + "）" : "";
  }

  // a gauge whose every flood alert has no recent reading is painted as unknown, not as a live flood
  function staleGauges(alerts, live) {
    const fresh = new Set(), out = new Set();
    for (const a of alerts) if (live[a.fingerprint]) (isStale(live[a.fingerprint]) ? out : fresh).add(a.device_id);
    for (const id of fresh) out.delete(id);
    return out;
  }

  function renderUntold(alerts) {
    const n = alerts.filter((a) => a.untold).length, box = document.getElementById("untold");
    box.hidden = n === 0;
    box.textContent = n ? n + " 条活动告警没有通知任何人：没有路由到接收方（[alerts] routes / receivers），值守台之外无人知道" : "";
  }

  function renderMap(gauges, tiles, stale) {
    if (!map) {
      map = L.map("map", { zoomControl: true, attributionControl: !!tiles.url });
      if (tiles.url) L.tileLayer(tiles.url, { attribution: escapeHtml(tiles.attribution || ""), maxZoom: 19 }).addTo(map);
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
        m.bindTooltip(el("span", { class: "tip" }));  // a node, never a string: Leaflet renders a string as HTML
      } else m.setStyle(style);
      m.getTooltip().getContent().textContent = g.device_id + " " + (g.place || "");
      m.getElement && m.getElement() && m.getElement().setAttribute("data-state", state);
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

  let last = null;
  function apply(state) {
    last = state;
    skew = Date.now() - state.now_ms;
    renderAlerts(state.alerts, state.live || {}, state.silences || {});
    renderUntold(state.alerts);
    renderMap(state.gauges, window.deskTiles || {}, staleGauges(state.alerts, state.live || {}));
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
  setInterval(() => {  // ages, passed ETAs, gauges gone quiet
    if (!last) return;
    renderAlerts(last.alerts, last.live || {}, last.silences || {});
    renderMap(last.gauges, window.deskTiles || {}, staleGauges(last.alerts, last.live || {}));
  }, 10000);
  start();
})();
