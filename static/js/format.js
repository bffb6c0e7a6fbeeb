// Display helpers and the server clock.
// Money stays a decimal string end to end: Intl formats strings exactly, and
// comparisons scale the digits to BigInt. No float ever holds an amount.

const moneyFormats = new Map();

export function money(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "—";
  if (!currency) return String(amount);
  if (!moneyFormats.has(currency)) {
    moneyFormats.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency }));
  }
  return moneyFormats.get(currency).format(String(amount));
}

const DECIMAL = /^\d{1,10}(\.\d{1,2})?$/;

export function isAmount(text) {
  return DECIMAL.test(text);
}

function scaled(amount, places) {
  const [whole, fraction = ""] = String(amount).split(".");
  return BigInt(whole + fraction.padEnd(places, "0"));
}

// -1, 0 or 1, like a comparator; both arguments are decimal strings.
export function compareMoney(a, b) {
  const places = Math.max(...[a, b].map((x) => (String(x).split(".")[1] || "").length));
  const [x, y] = [scaled(a, places), scaled(b, places)];
  return x < y ? -1 : x > y ? 1 : 0;
}

const pad = (n) => String(n).padStart(2, "0");

export function duration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${pad(minutes)}m`;
  if (minutes) return `${minutes}m ${pad(seconds)}s`;
  return `${seconds}s`;
}

// Times a person acts on (an end, a start) carry their zone: the reader may not be where the sale is.
const DATE_TIME = { year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", timeZoneName: "short" };

export function dateTime(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, DATE_TIME) : "";
}

export function timeOfDay(iso) {
  return iso
    ? new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" })
    : "";
}

// A moment in a list (bid history): the time alone today, the date too on other days.
export function whenShort(iso, now = Date.now()) {
  if (!iso) return "";
  const at = new Date(iso);
  const time = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (at.toDateString() === new Date(now).toDateString()) return at.toLocaleTimeString(undefined, time);
  return at.toLocaleString(undefined, { month: "short", day: "numeric", ...time });
}

// Countdowns run on the server's time: the offset comes from `server_time`
// (LOT_STATUS, PONG), or roughly from the HTTP Date header until then.
let offsetMs = 0;
let precise = false;

export const serverClock = {
  now: () => Date.now() + offsetMs,
  sync(serverTime) {
    const t = Date.parse(serverTime);
    if (Number.isNaN(t)) return;
    offsetMs = t - Date.now();
    precise = true;
  },
  syncRoughly(httpDate) {
    const t = Date.parse(httpDate || "");
    // The header has whole seconds: only worth using for a large skew.
    if (!precise && !Number.isNaN(t) && Math.abs(t - Date.now()) > 2000) offsetMs = t - Date.now();
  },
};
