// Display helpers and the server clock.
// Money stays a decimal string end to end: Intl formats strings exactly, and
// comparisons scale the digits to BigInt. No float ever holds an amount.

const moneyFormats = new Map();

// `places`, the lot's `currency_places`, when known: the server's currency table, not Intl's, says them.
export function money(amount, currency, places) {
  if (amount === null || amount === undefined || amount === "") return "—";
  if (!currency) return String(amount);
  const key = `${currency} ${places}`;
  if (!moneyFormats.has(key)) {
    const digits = places === undefined ? {} : { minimumFractionDigits: places, maximumFractionDigits: places };
    moneyFormats.set(key, new Intl.NumberFormat(undefined, { style: "currency", currency, ...digits }));
  }
  return moneyFormats.get(key).format(String(amount));
}

// --- Amounts a person types -------------------------------------------------------
// In the browser's locale, as the page shows them: "40,50" and "1.000,50" in German, "1,000.50" in English.

const MAX_WHOLE_DIGITS = 10; // the server's money columns: 9999999999.99 at most

function fixedPlaces(places, grouping) {
  return new Intl.NumberFormat(undefined, {
    minimumFractionDigits: places,
    maximumFractionDigits: places,
    useGrouping: grouping,
  });
}

let symbols = null;

// The locale's decimal and group separators (a group of spaces reads as any space).
function numberSymbols() {
  if (!symbols) {
    const parts = new Intl.NumberFormat(undefined).formatToParts("1234567.5");
    const part = (type) => parts.find((p) => p.type === type)?.value;
    symbols = { decimal: part("decimal") ?? ".", group: part("group") ?? "" };
  }
  return symbols;
}

// How the page writes the currency (its symbol, a narrow one) and its code: any one may lead or trail an amount.
function currencyMarks(currency) {
  const marks = new Set([currency]);
  for (const currencyDisplay of ["symbol", "narrowSymbol"]) {
    const parts = new Intl.NumberFormat(undefined, { style: "currency", currency, currencyDisplay }).formatToParts("1");
    marks.add(parts.find((p) => p.type === "currency")?.value);
  }
  marks.delete(undefined);
  return [...marks].sort((a, b) => b.length - a.length);
}

// An amount in the bid field: the currency's places, the locale's decimal separator, no grouping ("1000", "10,50").
export function amountForInput(amount, places) {
  return fixedPlaces(places, false).format(String(amount));
}

// A typed amount as the decimal string the API takes: {amount: "1000.5"}, or {problem} saying how to type it.
export function parseAmount(text, currency, places) {
  const { decimal, group } = numberSymbols();
  const example = fixedPlaces(places, true).format(places ? "1234.5" : "1200");
  const howTo = { problem: `Enter an amount like ${example}.` };
  let rest = String(text).trim();
  for (const mark of currencyMarks(currency)) {
    if (rest.startsWith(mark)) rest = rest.slice(mark.length);
    else if (rest.endsWith(mark)) rest = rest.slice(0, -mark.length);
    else continue;
    break;
  }
  rest = rest.trim();
  if (/^\s$/u.test(group)) rest = rest.replace(/\s/gu, group);
  const [whole, fraction = "", ...more] = rest.split(decimal);
  if (more.length || (rest.includes(decimal) && !/^\d+$/.test(fraction))) return howTo;
  const digits = group ? whole.split(group).join("") : whole;
  if (!/^\d+$/.test(digits)) return howTo;
  // Separators only where the page puts them: "1,000" but not "1,00" (a decimal comma in English?).
  if (digits !== whole && whole !== fixedPlaces(0, "always").format(digits)) return howTo;
  // Zeros past the currency's places change nothing: "1200.00" is a yen amount.
  const kept = fraction.replace(/0+$/, "");
  if (kept.length > places) {
    if (!places) return { problem: `${currency} takes no decimals: enter a whole amount, like ${example}.` };
    return { problem: `${currency} takes at most ${places} decimals, like ${example}.` };
  }
  const integer = digits.replace(/^0+(?=\d)/, "");
  const decimals = fraction.slice(0, places);
  if (integer.length > MAX_WHOLE_DIGITS) return { problem: "That amount is too large." };
  if (/^0+$/.test(integer + decimals)) return { problem: "Enter an amount above zero." };
  return { amount: decimals ? `${integer}.${decimals}` : integer };
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
