// The status page: polls the bridge's own API every 2 s and redraws each camera's card.
// No framework, no external assets; every value is inserted as text, never as HTML, except
// the QR code's SVG, which our server renders.
"use strict";

const POLL_MS = 2000;
const SNAPSHOT_MS = 10000;
let token = sessionStorage.getItem("hksv-token") || "";
const snapshotAt = new Map();

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, as) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (r.status === 401) {
    document.getElementById("login").hidden = false;
    throw new Error("the API needs its token");
  }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return as === "blob" ? r.blob() : as === "text" ? r.text() : r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(word) {
  return el("span", { class: "badge " + String(word).replace(/ /g, "-") }, word);
}

function card(name) {
  const id = "cam-" + encodeURIComponent(name).replace(/%/g, "_");
  let c = document.getElementById(id);
  if (!c) {
    c = el("section", { class: "card", id, "data-camera": name });
    c.append(
      el("h2", {}, el("span", { class: "name" }, name), el("span", { class: "state" })),
      el("img", { class: "snapshot", alt: "snapshot of " + name }),
      el("div", { class: "pair", hidden: "" }),
      el("dl", { class: "facts" }),
      el("div", { class: "gop" }),
      el("ul", { class: "events" }),
    );
    document.getElementById("cameras").append(c);
  }
  return c;
}

function fact(dl, term, value, cls) {
  dl.append(el("dt", {}, term), el("dd", cls ? { class: cls } : {}, value));
}

function describe(e) {
  const r = e.recording;
  let what = e.trigger ? "motion (" + e.trigger + ")" : "recording";
  if (r) {
    what += ": " + (r.fragments || 0) + " fragments, " + Math.round((r.bytes || 0) / 1024) + " KiB";
    if (r.opened_after_ms !== null && r.opened_after_ms !== undefined) what += ", hub after " + r.opened_after_ms + " ms";
    if (r.end) what += " — " + r.end;
  }
  if (e.diagnosis) what += " — " + e.diagnosis;
  return what;
}

async function drawCamera(name) {
  const base = "/api/cameras/" + encodeURIComponent(name);
  const [d, events, live] = await Promise.all([
    api(base),
    api(base + "/events?limit=5"),
    api(base + "/live-sessions?limit=1"),
  ]);
  const c = card(name);
  const state = c.querySelector(".state");
  state.replaceChildren(badge(d.state));
  const img = c.querySelector(".snapshot");
  const now = Date.now();
  if (!snapshotAt.has(name) || now - snapshotAt.get(name) > SNAPSHOT_MS) {
    snapshotAt.set(name, now);
    api(base + "/snapshot.jpg?width=640&height=360", "blob")
      .then((b) => {
        const old = img.src;
        img.src = URL.createObjectURL(b);
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      })
      .catch(() => snapshotAt.delete(name));
  }
  const pair = c.querySelector(".pair");
  if (!d.paired && d.setup_code) {
    if (pair.dataset.code !== d.setup_code) {
      const svg = await api(base + "/setup-qr.svg", "text");
      pair.innerHTML = svg; // our server's SVG
      pair.append(el("div", {}, el("div", { class: "muted" }, "Scan in the Home app, or enter"), el("div", { class: "code" }, d.setup_code)));
      pair.dataset.code = d.setup_code;
    }
    pair.hidden = false;
  } else {
    pair.hidden = true;
    pair.replaceChildren();
    delete pair.dataset.code;
  }
  const dl = c.querySelector(".facts");
  dl.replaceChildren();
  fact(dl, "source", d.source);
  if (d.last_error && d.state !== "streaming") fact(dl, "error", d.last_error + " (since " + d.since + ")", "error");
  if (d.stream) {
    const s = d.stream;
    fact(dl, "stream", s.width + "×" + s.height + " " + s.fps + " fps, H.264 " + s.profile + " " + s.level + (s.audio_hz ? ", AAC " + s.audio_hz + " Hz" : ", no audio"));
  }
  fact(dl, "paired", d.paired ? "yes (" + d.controllers.length + " controller" + (d.controllers.length === 1 ? "" : "s") + ")" : "no");
  fact(dl, "recording", d.homekit.recording_active ? (d.recording ? "recording now" : "on") : "off in the Home app");
  fact(dl, "prebuffer", (d.prebuffer_ms / 1000).toFixed(1) + " s");
  if (d.detector) {
    const t = d.detector;
    const input = t.input === "detect_source" ? "sub-stream" + (t.input_state && t.input_state !== "streaming" ? " (" + t.input_state + (t.input_error ? ": " + t.input_error : "") + ")" : "") : "main stream";
    fact(dl, "motion detector", "on, " + input + (t.resolution ? " " + t.resolution : "") + ", " + t.cpu_percent.toFixed(1) + " % of a core" + (t.queue_drops ? ", behind (" + t.queue_drops + " frames dropped)" : ""), t.queue_drops || t.input_error ? "error" : undefined);
  } else if (d.detector_off) fact(dl, "motion detector", "off: " + d.detector_off);
  if (d.live_viewers) fact(dl, "live view", d.live_viewers + " viewer(s) now");
  else if (live.length) {
    const l = live[0];
    fact(dl, "last live view", (l.requested || "?") + " to " + l.viewer + ", " + (l.duration_ms / 1000).toFixed(0) + " s — " + l.end + (l.audio ? "; audio " + l.audio : ""));
  }
  const gop = c.querySelector(".gop");
  gop.replaceChildren();
  if (d.gop_level) gop.append(badge(d.gop_level), " GOP: " + d.gop_message);
  const ul = c.querySelector(".events");
  ul.replaceChildren(...events.map((e) => el("li", { "data-id": e.id }, badge(e.outcome), " ", el("span", { class: "muted" }, e.at.replace("T", " ").replace(/\.\d+Z$/, "Z")), " ", describe(e))));
  if (!events.length) ul.append(el("li", { class: "muted" }, "no motion events yet"));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const cams = await api("/api/cameras");
    await Promise.all(cams.map((c) => drawCamera(c.name)));
    for (const c of document.querySelectorAll(".card")) {
      if (!cams.some((x) => x.name === c.dataset.camera)) c.remove();
    }
    status.textContent = cams.length + " camera(s), updated " + new Date().toLocaleTimeString();
  } catch (e) {
    status.textContent = String(e.message || e);
  }
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("hksv-token", token);
  document.getElementById("login").hidden = true;
  poll();
});

poll();
setInterval(poll, POLL_MS);
