// Wording and numbers of the wall display: money, countdowns, statuses, and the check
// that a lot from the network has the shape the page relies on. Pure functions: no DOM,
// no state, so the browser test can import and exercise them directly.

/** An open lot this close to its end (ms) is shown as CLOSING. */
export const CLOSING_MS = 60_000;

const STATUSES = new Set(["scheduled", "open", "closed", "sold", "passed", "withdrawn"]);
const LOT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const LANE = /^[A-Za-z0-9_-]{1,32}$/;
const CURRENCY = /^[A-Z]{3}$/;
const MAX_MONEY = 10_000_000_000_000;

const formatters = new Map();

/** Number of minor-unit digits of `currency` (2 for EUR, 0 for JPY). */
function fractionDigits(currency) {
  try {
    const f = new Intl.NumberFormat("en", { style: "currency", currency });
    return f.resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

function formatter(currency, fraction) {
  const key = `${currency}/${fraction}`;
  let f = formatters.get(key);
  if (!f) {
    try {
      f = new Intl.NumberFormat(undefined, {
        style: "currency",
        currency,
        minimumFractionDigits: fraction,
        maximumFractionDigits: fraction,
      });
    } catch {
      f = null; // an unknown code: fall back to digits and the code
    }
    formatters.set(key, f);
  }
  return f;
}

/**
 * `minor` (an integer number of minor units) as money in `currency`, such as
 * "€12,500" or "€12,500.50". The amount is split into whole and minor parts with
 * integer arithmetic and handed to Intl as a decimal string, so no float rounding
 * ever shows.
 */
export function money(minor, currency) {
  if (!Number.isSafeInteger(minor)) return "–";
  const digits = fractionDigits(currency);
  const base = 10 ** digits;
  const abs = Math.abs(minor);
  const frac = abs % base;
  const whole = (abs - frac) / base;
  const sign = minor < 0 ? "-" : "";
  const decimal = frac === 0 ? `${sign}${whole}` : `${sign}${whole}.${String(frac).padStart(digits, "0")}`;
  const f = formatter(currency, frac === 0 ? 0 : digits);
  if (f) return f.format(decimal);
  return `${decimal} ${currency}`;
}

/** Smallest acceptable next bid (same rule as the master's). */
export function nextBid(lot) {
  return lot.bid_count === 0 ? lot.starting_price : lot.current_price + lot.increment;
}

/** Remaining time as "1:02:03", "4:05" or "0:09" (never negative). */
export function countdown(remainingMs) {
  const total = Math.max(0, Math.ceil(remainingMs / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A duration for the banner: "8 s", "3 min", "2 h". */
export function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

/**
 * What the banner of a lot says, at master time `now`: `{key, label}` where key is
 * a CSS hook and label the words shown (status is never told by colour alone).
 */
export function phase(lot, now) {
  switch (lot.status) {
    case "open":
      return lot.endsAtMs - now <= CLOSING_MS
        ? { key: "closing", label: "CLOSING" }
        : { key: "open", label: "OPEN" };
    case "scheduled":
      return { key: "scheduled", label: "UPCOMING" };
    case "closed":
      return { key: "closed", label: "CLOSED" };
    case "sold":
      return { key: "sold", label: "SOLD" };
    case "passed":
      return { key: "passed", label: "PASSED" };
    default:
      return { key: "withdrawn", label: "WITHDRAWN" };
  }
}

/**
 * What a lot's screen says of its reserve: `{key, label}`, or null when the lot has
 * none. The amount is confidential; terminals only ever learn whether it is met.
 */
export function reserve(lot) {
  if (lot.reserve_met === null) return null;
  return lot.reserve_met
    ? { key: "met", label: "Reserve met" }
    : { key: "not-met", label: "Reserve not met" };
}

/** "Lane A · #3", "Lane A", or "" for a lot in no lane. */
export function laneText(lot) {
  if (lot.lane === null) return "";
  return lot.run_order === null ? `Lane ${lot.lane}` : `Lane ${lot.lane} · #${lot.run_order}`;
}

/** Whether a status is final (sold, passed, withdrawn). */
export function isFinal(status) {
  return status === "sold" || status === "passed" || status === "withdrawn";
}

function isMoney(v) {
  return Number.isSafeInteger(v) && v >= 0 && v <= MAX_MONEY;
}

function isTime(v) {
  return typeof v === "string" && v.length <= 40 && Number.isFinite(Date.parse(v));
}

/**
 * The lot's fields the page uses, checked; `null` when anything is off, so a
 * malformed lot from the network is dropped instead of breaking the screen.
 * Adds `endsAtMs`, `startsAtMs` and `updatedAtMs` (master clock, ms).
 */
export function checkLot(raw) {
  if (raw === null || typeof raw !== "object") return null;
  const ok =
    typeof raw.id === "string" && LOT_ID.test(raw.id) &&
    typeof raw.title === "string" && raw.title.length <= 400 &&
    typeof raw.currency === "string" && CURRENCY.test(raw.currency) &&
    isMoney(raw.starting_price) && isMoney(raw.increment) && isMoney(raw.current_price) &&
    Number.isSafeInteger(raw.bid_count) && raw.bid_count >= 0 &&
    (raw.leading_bidder === null || raw.leading_bidder === undefined ||
      (typeof raw.leading_bidder === "string" && raw.leading_bidder.length <= 200)) &&
    STATUSES.has(raw.status) &&
    isTime(raw.starts_at) && isTime(raw.ends_at) && isTime(raw.updated_at) &&
    Number.isSafeInteger(raw.seq) && raw.seq >= 0 &&
    (raw.reserve_met === undefined || raw.reserve_met === null || typeof raw.reserve_met === "boolean") &&
    (raw.lane === undefined || raw.lane === null || (typeof raw.lane === "string" && LANE.test(raw.lane))) &&
    (raw.run_order === undefined || raw.run_order === null ||
      (Number.isSafeInteger(raw.run_order) && raw.run_order >= 0));
  if (!ok) return null;
  const attributes = {};
  if (raw.attributes && typeof raw.attributes === "object" && !Array.isArray(raw.attributes)) {
    for (const [k, v] of Object.entries(raw.attributes).slice(0, 32)) {
      if (["string", "number", "boolean"].includes(typeof v)) attributes[k] = String(v).slice(0, 200);
    }
  }
  const bids = Array.isArray(raw.recent_bids) ? raw.recent_bids.slice(0, 10) : [];
  return {
    id: raw.id,
    title: raw.title,
    attributes,
    currency: raw.currency,
    starting_price: raw.starting_price,
    increment: raw.increment,
    current_price: raw.current_price,
    bid_count: raw.bid_count,
    leading_bidder: raw.leading_bidder ?? null,
    status: raw.status,
    seq: raw.seq,
    reserve_met: raw.reserve_met ?? null,
    lane: raw.lane ?? null,
    run_order: raw.run_order ?? null,
    startsAtMs: Date.parse(raw.starts_at),
    endsAtMs: Date.parse(raw.ends_at),
    updatedAtMs: Date.parse(raw.updated_at),
    recent_bids: bids
      .filter((b) => b && typeof b.bidder === "string" && isMoney(b.amount) && isTime(b.at))
      .map((b) => ({ bidder: b.bidder.slice(0, 200), amount: b.amount, atMs: Date.parse(b.at) })),
  };
}

/** Attributes worth a line on the single-lot view, in a sensible order. */
export function describe(attributes) {
  const parts = [];
  const a = attributes;
  if (a.year) parts.push(a.year);
  if (a.mileage_km && /^\d+$/.test(a.mileage_km)) {
    parts.push(`${Number(a.mileage_km).toLocaleString()} km`);
  }
  for (const key of ["fuel", "gearbox", "colour"]) if (a[key]) parts.push(a[key]);
  for (const [k, v] of Object.entries(a)) {
    if (!["make", "model", "year", "mileage_km", "fuel", "gearbox", "colour"].includes(k)) {
      parts.push(`${k.replaceAll("_", " ")}: ${v}`);
    }
  }
  return parts;
}

/** A lot id from the URL, or null when it is not a valid id. */
export function lotIdParam(value) {
  return typeof value === "string" && LOT_ID.test(value) ? value : null;
}
