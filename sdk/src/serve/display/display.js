// lotsync wall display: the hall's screens, served by the terminal server at /display.
//
// URL parameters (anything invalid falls back to the default and says so):
//   layout=board          every lot on the floor as tiles (default)
//   layout=lot&lot=ID     one lot across the screen; without lot=, the open lot closing
//                         soonest (kept until it is settled, then the next)
//   layout=rotate&every=N one open lot after another, N seconds each (3–600, default 10)
//
// Data: a snapshot from /v1/lots, then one EventSource on /v1/notices?lots=inline whose
// notices carry the changed lot, so nothing is fetched per change. A lot is applied
// only when its seq is above the one shown (the screen never goes back in time). A
// reset, a new epoch or a gap in the sequence reloads the snapshot while the old data
// stays on screen. Countdowns run on the master's clock (offset from heartbeats' `at`).
//
// For benchmarks: window.lotsyncApplied maps a sequence number (of the current epoch)
// to the time the page applied that version to the DOM (performance.timeOrigin +
// performance.now(), ms since the Unix epoch); it keeps the newest STAMPS entries.

import { age, checkLot, lotIdParam } from "./format.js";
import { Board, LINGER_MS, Single, follow, openLots } from "./view.js";

const STAMPS = 10_000;
const MAX_LOTS = 10_000;
const TICK_MS = 250;
const OFFSET_SAMPLES = 8;

const state = {
  epoch: null, // epoch of the lots shown
  streamEpoch: null, // epoch the open stream announced in its hello
  cursor: 0, // highest sequence known to be applied or covered by a snapshot
  lots: new Map(), // id → checked lot
  firstEnds: new Map(), // id → end time first seen, to tell an extension
  offsets: [], // recent (master clock − local clock) samples, ms
  heartbeatMs: 2000,
  source: null,
  live: false, // the stream said hello and has not failed since
  stale: false, // the terminal server lost its own upstream
  lastEventAt: 0, // local time of the last event on the stream
  freshAt: 0, // local time the data was last known to be current
  resyncing: false,
  resyncAgain: false,
  failures: 0,
  denied: false,
};

const stampKeys = [];
window.lotsyncApplied = {};

function stamp(seq) {
  if (seq in window.lotsyncApplied) return;
  window.lotsyncApplied[seq] = performance.timeOrigin + performance.now();
  stampKeys.push(seq);
  if (stampKeys.length > STAMPS) delete window.lotsyncApplied[stampKeys.shift()];
}

function masterNow() {
  // The largest sample is the one least delayed in transit.
  const offset = state.offsets.length ? Math.max(...state.offsets) : 0;
  return Date.now() + offset;
}

const ctx = {
  lots: state.lots,
  masterNow,
  extended: (lot) => lot.endsAtMs > (state.firstEnds.get(lot.id) ?? lot.endsAtMs),
};

// ---- layout from the URL ----

const params = new URLSearchParams(location.search);
const main = document.getElementById("main");
const banner = document.getElementById("banner");
let notes = [];
let view;

function makeView() {
  const layout = params.get("layout") ?? "board";
  if (layout === "lot") {
    const named = params.get("lot");
    if (named !== null && lotIdParam(named) === null) notes.push("the lot parameter is not a valid lot id");
    const id = lotIdParam(named);
    if (id) {
      return new Single(main, ctx, () => (state.lots.has(id) ? id : null), () =>
        state.lots.has(id) ? "" : `Lot ${id} is not in this auction.`);
    }
    let current = null;
    return new Single(main, ctx, (now) => (current = follow(state.lots, current, now, LINGER_MS / 2)), () =>
      current ? "Following the lot closing soonest" : "No lot is open right now.");
  }
  if (layout === "rotate") {
    let every = Number(params.get("every") ?? 10);
    if (!Number.isInteger(every) || every < 3 || every > 600) {
      notes.push("every must be a whole number of seconds from 3 to 600; using 10");
      every = 10;
    }
    let index = 0;
    let shownId = null;
    let switchAt = 0;
    return new Single(main, ctx, () => {
      const open = openLots(state.lots);
      const t = performance.now();
      const stillOpen = open.findIndex((l) => l.id === shownId);
      if (stillOpen >= 0 && t < switchAt) return shownId;
      if (open.length === 0) return (shownId = null);
      index = stillOpen >= 0 ? (stillOpen + 1) % open.length : index % open.length;
      switchAt = t + every * 1000;
      return (shownId = open[index].id);
    }, () => {
      const open = openLots(state.lots);
      const i = open.findIndex((l) => l.id === shownId);
      return i >= 0 ? `${i + 1} of ${open.length} open lots` : "No lot is open right now.";
    });
  }
  if (layout !== "board") notes.push(`unknown layout "${layout.slice(0, 20)}"; showing the board`);
  return new Board(main, ctx);
}

// ---- applying data ----

function apply(raw, noticeSeq) {
  const lot = checkLot(raw);
  if (!lot) {
    console.warn("lotsync display: a malformed lot was ignored");
    return;
  }
  const prev = state.lots.get(lot.id);
  if (prev && lot.seq <= prev.seq) return;
  state.lots.set(lot.id, lot);
  if (!state.firstEnds.has(lot.id)) state.firstEnds.set(lot.id, lot.endsAtMs);
  view.lotChanged(lot, prev);
  stamp(lot.seq);
  if (noticeSeq !== undefined && noticeSeq < lot.seq) stamp(noticeSeq);
}

function parse(data) {
  if (typeof data !== "string" || data.length > 1_000_000) return null;
  try {
    const v = JSON.parse(data);
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

const isSeq = (v) => Number.isSafeInteger(v) && v >= 0;
const isEpoch = (v) => typeof v === "string" && v.length > 0 && v.length <= 128;

async function loadSnapshot() {
  const res = await fetch("/v1/lots", { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
  if (res.status === 401 || res.status === 403) {
    deny();
    throw new Error("not authorised");
  }
  if (!res.ok) throw new Error(`snapshot answered ${res.status}`);
  const body = await res.json();
  if (!body || !isEpoch(body.epoch) || !isSeq(body.seq) || !Array.isArray(body.lots)) {
    throw new Error("malformed snapshot");
  }
  if (body.epoch !== state.epoch) {
    // Another history: its sequence numbers mean nothing next to ours. Swap in one
    // step, so the screen never goes blank.
    const fresh = new Map();
    for (const raw of body.lots.slice(0, MAX_LOTS)) {
      const lot = checkLot(raw);
      if (lot) fresh.set(lot.id, lot);
    }
    state.lots.clear();
    state.firstEnds.clear();
    for (const [id, lot] of fresh) {
      state.lots.set(id, lot);
      state.firstEnds.set(id, lot.endsAtMs);
    }
    state.epoch = body.epoch;
    view.replaced();
    // Stamps are keyed by sequence numbers, which restart with a new history.
    window.lotsyncApplied = {};
    stampKeys.length = 0;
    for (const lot of fresh.values()) stamp(lot.seq);
  } else {
    for (const raw of body.lots.slice(0, MAX_LOTS)) apply(raw);
  }
  state.cursor = body.seq;
  state.freshAt = Date.now();
  view.tick(masterNow());
}

// ---- the notice stream ----

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
  state.live = false;
  state.streamEpoch = null;
}

function openStream() {
  closeStream();
  const url = `/v1/notices?lots=inline&epoch=${encodeURIComponent(state.epoch)}&after=${state.cursor}`;
  const source = new EventSource(url);
  state.source = source;
  state.lastEventAt = Date.now();
  const on = (name, handler) =>
    source.addEventListener(name, (e) => {
      if (state.source !== source) return;
      const data = parse(e.data);
      if (!data) return console.warn(`lotsync display: a malformed ${name} event was ignored`);
      state.lastEventAt = Date.now();
      handler(data);
    });
  on("hello", (h) => {
    if (!isEpoch(h.epoch)) return;
    state.streamEpoch = h.epoch;
    if (Number.isSafeInteger(h.heartbeat_ms)) state.heartbeatMs = Math.min(60_000, Math.max(100, h.heartbeat_ms));
    state.live = true;
    state.failures = 0;
    if (h.epoch !== state.epoch) resync();
    refreshBanner();
  });
  on("notice", (n) => {
    if (!isSeq(n.seq) || lotIdParam(n.lot_id) === null) return;
    if (state.streamEpoch !== state.epoch) return; // a resync is on its way
    const gap = n.seq > state.cursor + 1;
    state.cursor = Math.max(state.cursor, n.seq);
    if (n.lot && typeof n.lot === "object" && n.lot.id === n.lot_id) apply(n.lot, n.seq);
    else fetchLot(n.lot_id, n.seq);
    // Notices were missed (the server skipped ahead): the snapshot repairs it.
    if (gap) return resync();
    if (!state.stale) state.freshAt = Date.now();
  });
  on("heartbeat", (h) => {
    if (!isEpoch(h.epoch) || !isSeq(h.head)) return;
    const at = typeof h.at === "string" ? Date.parse(h.at) : NaN;
    if (Number.isFinite(at)) {
      state.offsets.push(at - Date.now());
      if (state.offsets.length > OFFSET_SAMPLES) state.offsets.shift();
    }
    state.stale = h.stale === true;
    if (!state.stale) state.freshAt = Date.now();
    if (h.epoch !== state.epoch || h.head > state.cursor) resync();
    refreshBanner();
  });
  on("reset", () => resync());
  source.addEventListener("error", () => {
    if (state.source !== source) return;
    state.live = false;
    // CONNECTING: the browser retries by itself, resuming with Last-Event-ID.
    // CLOSED: the server refused the stream; start over from a snapshot.
    if (source.readyState === EventSource.CLOSED) resync();
    refreshBanner();
  });
}

const pending = new Map(); // id → highest noticed seq whose lot is being fetched

/** A notice without its lot (a server that does not inline): one fetch per lot at a time. */
async function fetchLot(id, seq) {
  const inFlight = pending.has(id);
  pending.set(id, Math.max(pending.get(id) ?? 0, seq));
  if (inFlight) return;
  while (pending.has(id) && !state.denied) {
    const want = pending.get(id);
    try {
      const res = await fetch(`/v1/lots/${id}?min_seq=${want}`, { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401 || res.status === 403) return deny();
      if (!res.ok) throw new Error(`lot fetch answered ${res.status}`);
      apply(await res.json(), want);
      if (pending.get(id) === want) pending.delete(id);
    } catch (error) {
      console.warn(`lotsync display: ${error.message}; reloading the snapshot`);
      pending.delete(id);
      resync();
    }
  }
}

/** Reload the snapshot and reopen the stream after it; one at a time, with backoff. */
async function resync() {
  if (state.denied) return;
  if (state.resyncing) {
    state.resyncAgain = true;
    return;
  }
  state.resyncing = true;
  try {
    do {
      state.resyncAgain = false;
      try {
        await loadSnapshot();
        openStream();
      } catch (error) {
        if (state.denied) return;
        state.failures += 1;
        console.warn(`lotsync display: resync failed (${error.message}); retrying`);
        closeStream();
        refreshBanner();
        const delay = Math.min(15_000, 250 * 2 ** Math.min(state.failures, 6));
        await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * delay / 2));
        state.resyncAgain = true;
      }
    } while (state.resyncAgain && !state.denied);
  } finally {
    state.resyncing = false;
  }
}

function deny() {
  state.denied = true;
  closeStream();
  state.lots.clear();
  state.epoch = null;
  document.body.dataset.connection = "denied";
  main.replaceChildren();
  const box = document.createElement("section");
  box.className = "denied";
  box.setAttribute("role", "alert");
  const h = document.createElement("h1");
  h.textContent = "Not authorised";
  const p = document.createElement("p");
  p.textContent = "This screen's authorisation is no longer accepted by the terminal server. " +
    "Open /display?token=DISPLAY-TOKEN again with a current display token.";
  box.append(h, p);
  main.append(box);
  banner.hidden = true;
}

// ---- connection banner and the clock ----

function refreshBanner() {
  if (state.denied) return;
  const now = Date.now();
  const silent = state.live && now - state.lastEventAt > 2.5 * state.heartbeatMs;
  let connection = "live";
  let text = "";
  const dataAge = state.freshAt ? `data from ${age(now - state.freshAt)} ago` : "no data yet";
  if (state.epoch === null) {
    connection = "connecting";
    text = state.failures ? `Cannot reach the terminal server; retrying (${dataAge})` : "";
  } else if (!state.live || silent) {
    connection = "reconnecting";
    text = `Reconnecting to the terminal server. Showing ${dataAge}.`;
  } else if (state.stale) {
    connection = "stale";
    text = `The terminal server has lost the auction master. Prices may be out of date: ${dataAge}.`;
  }
  if (notes.length) text = text ? `${text} (${notes.join("; ")})` : `Note: ${notes.join("; ")}`;
  if (document.body.dataset.connection !== connection) document.body.dataset.connection = connection;
  if (banner.textContent !== text) banner.textContent = text;
  banner.hidden = text === "";
  banner.dataset.kind = connection;
}

function tick() {
  if (state.denied) return;
  const now = Date.now();
  // A stream that stays silent past several heartbeats is dead without knowing it.
  if (state.source && state.live && now - state.lastEventAt > 4 * state.heartbeatMs) {
    console.warn("lotsync display: no heartbeat; reconnecting");
    state.source.close();
    state.live = false;
    resync();
  }
  if (state.epoch !== null) view.tick(masterNow());
  refreshBanner();
}

view = makeView();
refreshBanner();
setInterval(tick, TICK_MS);
resync();
