// The wall display's layouts. Each view owns the DOM under <main> and is told three
// things by the controller (display.js): a lot changed, every lot was replaced, and
// the clock ticked. Views write text with textContent only: lot data never becomes
// markup.

import { age, countdown, describe, isFinal, laneText, money, nextBid, phase, reserve } from "./format.js";

/** A settled or withdrawn lot stays on the board this long (master clock, ms). */
export const LINGER_MS = 30_000;
/** Wanted width/height of a board tile; the grid picks its columns around it. */
const TILE_ASPECT = 1.45;
/** Bids listed on the single-lot view. */
const LAST_BIDS = 6;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Set text only when it differs, so a tick does not churn the DOM. */
function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

function setData(e, key, value) {
  const v = String(value);
  if (e.dataset[key] !== v) e.dataset[key] = v;
}

/**
 * Set the amount and tell CSS its width in ems (`--price-em`), so a long price
 * shrinks to fit its box instead of being cut off.
 */
function setPrice(price, amount, text) {
  if (amount.textContent === text) return;
  amount.textContent = text;
  // Bold digits are up to 0.7 em wide; the currency code after them about 1.3 em.
  price.style.setProperty("--price-em", (text.length * 0.72 + 1.3).toFixed(2));
}

/** How long a changed price stays highlighted. */
const FLASH_MS = 1200;
const flashTimers = new WeakMap();

/**
 * Highlight a changed price for a moment. On, then off: two repaints, where a fading
 * animation would repaint every frame (costly on kiosk hardware rendering in software).
 */
function flash(e) {
  clearTimeout(flashTimers.get(e));
  e.classList.add("flash");
  flashTimers.set(e, setTimeout(() => e.classList.remove("flash"), FLASH_MS));
}

function clockText(now) {
  return new Date(now).toLocaleTimeString(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
}

/** Whether the board shows a lot at master time `now`. */
function onBoard(lot, now) {
  if (lot.status === "open" || lot.status === "closed") return true;
  return isFinal(lot.status) && now - lot.updatedAtMs < LINGER_MS;
}

/** The status badge: words and a symbol, colour only as a third cue. */
function badge() {
  const b = el("span", "badge");
  b.append(el("span", "badge-icon"), el("span", "badge-label"));
  b.firstChild.setAttribute("aria-hidden", "true");
  return b;
}

function fillBadge(b, lotPhase) {
  setData(b, "phase", lotPhase.key);
  setText(b.lastChild, lotPhase.label);
}

/** The reserve chip: hidden for a lot without a reserve; a symbol and words, not colour alone. */
function fillReserve(e, lot) {
  const r = reserve(lot);
  e.hidden = !r;
  if (!r) return;
  setData(e, "reserve", r.key);
  setText(e, `${r.key === "met" ? "\u2714" : "\u2715"} ${r.label}`);
}

function fact(label, className) {
  const d = el("div", "fact");
  d.append(el("dt", null, label), el("dd", className));
  return d;
}

/** The hall board: every lot on the floor as a tile in a grid that fills the screen. */
export class Board {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.tiles = new Map();
    this.order = "";
    root.replaceChildren();
    const head = el("header", "board-head");
    this.count = el("h1", "board-title", "Lots on the floor");
    this.clock = el("span", "clock");
    head.append(this.count, this.clock);
    this.grid = el("section", "grid");
    this.grid.setAttribute("aria-label", "Open lots");
    this.empty = el("p", "message", "No lot is open right now.");
    this.empty.hidden = true;
    root.append(head, this.grid, this.empty);
    addEventListener("resize", () => this.fit());
  }

  lotChanged(lot, prev) {
    const tile = this.tiles.get(lot.id);
    if (tile) this.fill(tile, lot, prev);
    this.layout();
  }

  replaced() {
    for (const tile of this.tiles.values()) tile.root.remove();
    this.tiles.clear();
    this.order = "";
    this.layout();
  }

  tick(now) {
    setText(this.clock, clockText(now));
    for (const [id, tile] of this.tiles) this.fillTime(tile, this.ctx.lots.get(id), now);
    this.layout();
  }

  /** Bring the set and order of tiles in line with the lots on the board. */
  layout() {
    const now = this.ctx.masterNow();
    const shown = [...this.ctx.lots.values()].filter((l) => onBoard(l, now)).map((l) => l.id).sort();
    const order = shown.join("\n");
    if (order === this.order) return;
    this.order = order;
    const keep = new Set(shown);
    for (const [id, tile] of this.tiles) {
      if (!keep.has(id)) {
        tile.root.remove();
        this.tiles.delete(id);
      }
    }
    shown.forEach((id, i) => {
      let tile = this.tiles.get(id);
      if (!tile) {
        tile = this.tile();
        this.tiles.set(id, tile);
        this.fill(tile, this.ctx.lots.get(id), null);
      }
      if (this.grid.children[i] !== tile.root) this.grid.insertBefore(tile.root, this.grid.children[i] ?? null);
    });
    const open = [...this.ctx.lots.values()].filter((l) => l.status === "open").length;
    setText(this.count, `Lots on the floor · ${open} open`);
    this.empty.hidden = shown.length > 0;
    this.fit();
  }

  /** Columns and rows so that the tiles are as large as the screen allows. */
  fit() {
    const n = this.tiles.size;
    if (n === 0) return;
    const w = this.grid.clientWidth || innerWidth;
    const h = this.grid.clientHeight || innerHeight;
    let best = { cols: 1, rows: n, size: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const size = Math.min(w / cols / TILE_ASPECT, h / rows);
      if (size > best.size) best = { cols, rows, size };
    }
    this.grid.style.setProperty("--cols", best.cols);
    this.grid.style.setProperty("--rows", best.rows);
  }

  tile() {
    const root = el("article", "tile");
    const top = el("header", "tile-head");
    const title = el("h2", "tile-title");
    const b = badge();
    top.append(title, b);
    // Lane and reserve: one short line, hidden when the lot has neither.
    const tags = el("p", "tile-tags");
    const lane = el("span", "lane");
    const reserveChip = el("span", "reserve");
    tags.append(lane, reserveChip);
    const price = el("p", "price");
    const amount = el("span", "amount");
    const code = el("span", "currency");
    price.append(amount, " ", code);
    const facts = el("dl", "facts");
    facts.append(fact("Next bid", "next-bid"), fact("Ends in", "countdown"), fact("Leader", "leader"), fact("Bids", "bids"));
    const extended = el("p", "extended", "EXTENDED");
    extended.hidden = true;
    // The tile is the size container; its body's text scales with the tile.
    const body = el("div", "tile-body");
    body.append(top, tags, price, facts, extended);
    root.append(body);
    const q = (c) => root.querySelector(`.${c}`);
    return { root, title, badge: b, tags, lane, reserve: reserveChip, amount, code, nextBid: q("next-bid"), countdown: q("countdown"), leader: q("leader"), bids: q("bids"), extended };
  }

  fill(tile, lot, prev) {
    setData(tile.root, "lotId", lot.id);
    setText(tile.title, lot.title);
    setText(tile.lane, laneText(lot));
    tile.lane.hidden = lot.lane === null;
    fillReserve(tile.reserve, lot);
    tile.tags.hidden = tile.lane.hidden && tile.reserve.hidden;
    setPrice(tile.amount.parentElement, tile.amount, money(lot.current_price, lot.currency));
    setText(tile.code, lot.currency);
    setText(tile.nextBid, lot.status === "open" ? money(nextBid(lot), lot.currency) : "–");
    setText(tile.leader, lot.leading_bidder ?? "no bids yet");
    setText(tile.bids, String(lot.bid_count));
    if (prev && prev.current_price !== lot.current_price) flash(tile.amount.parentElement);
    this.fillTime(tile, lot, this.ctx.masterNow());
    // Last: data-seq says the element shows this version.
    setData(tile.root, "seq", lot.seq);
  }

  fillTime(tile, lot, now) {
    if (!lot) return;
    const p = phase(lot, now);
    setData(tile.root, "phase", p.key);
    fillBadge(tile.badge, p);
    setText(tile.countdown, lot.status === "open" ? countdown(lot.endsAtMs - now) : "ended");
    tile.extended.hidden = !this.ctx.extended(lot);
  }
}

/**
 * One lot across the whole screen (the floor view): car, big price, countdown, last
 * bids. `pick(now)` chooses the lot to show; it is asked on every change and tick.
 */
export class Single {
  constructor(root, ctx, pick, caption) {
    this.ctx = ctx;
    this.pick = pick;
    this.caption = caption;
    this.id = null;
    root.replaceChildren();
    this.root = el("article", "single");
    const top = el("header", "single-head");
    this.badge = badge();
    this.lotId = el("span", "lot-id");
    this.lane = el("span", "lane");
    this.extended = el("span", "extended", "EXTENDED");
    this.extended.hidden = true;
    this.note = el("span", "caption");
    this.clock = el("span", "clock");
    top.append(this.badge, this.lane, this.lotId, this.extended, this.note, this.clock);
    this.title = el("h1", "single-title");
    this.attrs = el("p", "attrs");
    const priceBox = el("section", "price-box");
    this.price = el("p", "price big-price");
    this.amount = el("span", "amount");
    this.code = el("span", "currency");
    this.price.append(this.amount, " ", this.code);
    const label = el("p", "label");
    this.reserve = el("span", "reserve");
    label.append(el("span", null, "Current price"), this.reserve);
    priceBox.append(label, this.price);
    const facts = el("dl", "facts single-facts");
    facts.append(fact("Next bid", "next-bid"), fact("Ends in", "countdown"), fact("Leader", "leader"), fact("Bids", "bids"));
    const bidBox = el("section", "last-bids");
    bidBox.append(el("h2", null, "Last bids"));
    this.bidList = el("ol", "bid-list");
    bidBox.append(this.bidList);
    this.root.append(top, this.title, this.attrs, priceBox, facts, bidBox);
    this.empty = el("p", "message");
    root.append(this.root, this.empty);
    const q = (c) => this.root.querySelector(`.${c}`);
    this.nextBid = q("next-bid");
    this.countdown = q("countdown");
    this.leader = q("leader");
    this.bids = q("bids");
    this.show(null);
  }

  lotChanged(lot, prev) {
    const now = this.ctx.masterNow();
    const target = this.pick(now);
    if (target !== this.id) return this.show(target);
    if (lot.id === this.id) this.fill(lot, prev, now);
  }

  replaced() {
    this.show(this.pick(this.ctx.masterNow()));
  }

  tick(now) {
    const target = this.pick(now);
    if (target !== this.id) return this.show(target);
    setText(this.clock, clockText(now));
    setText(this.note, this.caption());
    const lot = this.ctx.lots.get(this.id);
    if (lot) this.fillTime(lot, now);
  }

  show(id) {
    this.id = id;
    const lot = id && this.ctx.lots.get(id);
    this.root.hidden = !lot;
    this.empty.hidden = !!lot;
    if (!lot) {
      delete this.root.dataset.lotId;
      delete this.root.dataset.seq;
      setText(this.empty, this.caption() || "No lot is open right now.");
      return;
    }
    this.fill(lot, null, this.ctx.masterNow());
  }

  fill(lot, prev, now) {
    setData(this.root, "lotId", lot.id);
    setText(this.lotId, `Lot ${lot.id}`);
    setText(this.lane, laneText(lot));
    this.lane.hidden = lot.lane === null;
    fillReserve(this.reserve, lot);
    setText(this.title, lot.title);
    setText(this.attrs, describe(lot.attributes).join(" · "));
    setPrice(this.price, this.amount, money(lot.current_price, lot.currency));
    setText(this.code, lot.currency);
    setText(this.nextBid, lot.status === "open" ? money(nextBid(lot), lot.currency) : "–");
    setText(this.leader, lot.leading_bidder ?? "no bids yet");
    setText(this.bids, String(lot.bid_count));
    if (prev && prev.current_price !== lot.current_price) flash(this.price);
    const items = lot.recent_bids.slice(0, LAST_BIDS).map((b) => {
      const li = el("li", "bid");
      li.append(el("span", "bid-amount", money(b.amount, lot.currency)), el("span", "bid-who", b.bidder), el("span", "bid-when", `${age(now - b.atMs)} ago`));
      return li;
    });
    if (items.length === 0) items.push(el("li", "bid none", "No bids yet"));
    this.bidList.replaceChildren(...items);
    this.fillTime(lot, now);
    setData(this.root, "seq", lot.seq);
  }

  fillTime(lot, now) {
    const p = phase(lot, now);
    setData(this.root, "phase", p.key);
    fillBadge(this.badge, p);
    setText(this.countdown, lot.status === "open" ? countdown(lot.endsAtMs - now) : "ended");
    this.extended.hidden = !this.ctx.extended(lot);
    lot.recent_bids.slice(0, LAST_BIDS).forEach((b, i) => {
      const when = this.bidList.children[i]?.querySelector(".bid-when");
      if (when) setText(when, `${age(now - b.atMs)} ago`);
    });
  }
}

/** Open lots in board order. */
export function openLots(lots) {
  return [...lots.values()].filter((l) => l.status === "open").sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * The lot to follow when no lot is named: the one shown stays until it is settled
 * and has lingered; then the open lot closing soonest.
 */
export function follow(lots, current, now, lingerMs) {
  const shown = current && lots.get(current);
  if (shown && (!isFinal(shown.status) || now - shown.updatedAtMs < lingerMs)) {
    if (shown.status !== "scheduled") return current;
  }
  let best = null;
  for (const lot of lots.values()) {
    if (lot.status === "open" && (!best || lot.endsAtMs < best.endsAtMs)) best = lot;
  }
  return best ? best.id : null;
}
