// The lot page: live price, countdown, bidding over the lot's WebSocket
// (REST with the same idempotency key when the socket is down or silent), and the lot's chat.
import { api, getAll } from "../api.js";
import {
  amountForInput,
  compareMoney,
  dateTime,
  duration,
  money,
  parseAmount,
  serverClock,
  timeOfDay,
  whenShort,
} from "../format.js";
import { applyEvent, flash, imageOrPlaceholder, isMine, lotPhase, outcomeText, priceText, registrationPanel } from "../lots.js";
import { LiveSocket, newRequestId } from "../socket.js";
import { $, connectionBadge, el, fieldError, initPage, setText, showBanner } from "../ui.js";
import { LotChat } from "./lot/chat.js";

const lotId = Number($("main").dataset.lotId);
const ANSWER_TIMEOUT_MS = 8000;
const HISTORY_SIZE = 50;

const state = {
  lot: null,
  user: null,
  phase: null,
  watching: null, // unknown until the watchlist is read
  bids: new Map(),
  replaceHistory: false,
  pending: new Map(),
  // Whether the bid message says you lead (true), were outbid (false), or speaks of something else (null).
  messageLeading: null,
};
const fmt = (amount) => money(amount, state.lot?.currency, state.lot?.currency_places);

// What a person reads for each refusal: BID_REJECTED and ERROR codes, and REST error codes.
const MALFORMED = () => "The page sent a request the server did not understand. Reload the page and try again.";
const REFUSALS = {
  lot_not_open: () => "This lot is not open for bidding yet.",
  lot_closed: () => "Bidding on this lot has ended.",
  own_lot: () => "You can't bid on your own lot.",
  staff_cannot_bid: () => "Staff accounts can't bid.",
  bid_too_low: (r) => (r.min_next_bid ? `Your bid is too low: the minimum bid is now ${fmt(r.min_next_bid)}.` : "Your bid is too low."),
  already_leading: () => "You're already the highest bidder. To bid more, enter a higher maximum bid.",
  buy_now_unavailable: () => "Buy now is no longer available on this lot.",
  idempotency_conflict: () => "That request clashed with an earlier one. Please place your bid again.",
  not_registered: () => "Register for this sale before bidding.",
  registration_pending: () => "Your registration for this sale is still awaiting approval.",
  lot_not_found: () => "This lot no longer exists.",
  invalid_amount: (r) => `That amount isn't valid. ${r.message || ""}`.trim(),
  auth_required: () => "Your session has ended. Log in again to bid.",
  not_authenticated: () => "Your session has ended. Log in again to bid.",
  rate_limited: () => "You're sending bids too fast. Wait a moment and try again.",
  throttled: () => "Too many requests. Wait a moment and try again.",
  not_lot_manager: () => "Only the seller or staff can do that.",
  service_unavailable: () => "The auction service is briefly unavailable. Try again in a moment.",
  network_error: () => "Can't reach the server. Check your connection and try again.",
  invalid_idempotency_key: MALFORMED,
  invalid_request_id: MALFORMED,
  invalid_json: MALFORMED,
  invalid_message: MALFORMED,
  unknown_type: MALFORMED,
  binary_not_supported: MALFORMED,
  invalid_limit: MALFORMED,
};

const STATUS_TEXT = { draft: "Draft", scheduled: "Upcoming", open: "Open", closed: "Ended", cancelled: "Cancelled" };

const socket = new LiveSocket(`/ws/lots/${lotId}/`, {
  trackSeq: true,
  onFrame,
  onState: (socketState) => {
    connectionBadge("#connection")(socketState);
    if (socketState === "gone") showMissing();
    if (socketState === "live") chat.connected();
  },
});
const chat = new LotChat({ lotId, socket });

// --- Rendering ----------------------------------------------------------------

function render() {
  const { lot, user } = state;
  if (!lot) return;
  const { phase } = lotPhase(lot);
  const previous = state.phase;
  state.phase = phase;
  if ((phase === "ending" || phase === "opening") && previous !== phase) awaitClock();
  $("#lot").removeAttribute("aria-busy");
  document.title = `${lot.title} · Auctions`;
  setText("#lot-title", lot.title);
  setText("#lot-seller", lot.seller);
  setText("#lot-description", lot.description || "No description.");
  renderImage(lot);
  chat.setLot(lot);
  if (lot.auction) {
    $("#lot-sale").hidden = false;
    $("#lot-sale-link").href = `/auctions/${encodeURIComponent(lot.auction)}/`;
    setText("#lot-sale-link", `Sale: ${lot.auction_title || lot.auction}`);
  }
  const status = setText("#lot-status", STATUS_TEXT[lot.status] ?? lot.status);
  status.dataset.status = lot.status;

  const sold = lot.status === "closed" && lot.final_price;
  setText("#price-label", sold ? "Sold for" : lot.bid_count ? "Current bid" : "Starting price");
  const before = $("#lot-price").textContent;
  if (setText("#lot-price", priceText(lot)).textContent !== before && before !== "—") flash($("#lot-price"));
  setText("#lot-bid-count", lot.bid_count === 1 ? "1 bid" : `${lot.bid_count} bids`);
  const leading = isMine(lot, lot.high_bidder);
  const leader = phase === "ended" || !lot.high_bidder ? "" : leading ? "You're the highest bidder" : `Highest bidder: ${lot.high_bidder}`;
  setText("#lot-leader", leader).dataset.leading = String(Boolean(leading));
  const reserve = $("#lot-reserve");
  reserve.hidden = !lot.has_reserve;
  reserve.textContent = lot.reserve_met ? "Reserve met" : "Reserve not met";
  reserve.dataset.met = String(lot.reserve_met);
  setText("#min-next-bid", fmt(lot.min_next_bid));

  const result = $("#lot-result");
  result.hidden = phase !== "ended";
  if (phase === "ended") result.textContent = outcomeText(lot);

  // The seller and (by default) staff may never bid here: say so instead of offering a form that refuses.
  const barred = user && lot.bidding_barred ? REFUSALS[lot.bidding_barred]?.() ?? "You can't bid on this lot." : null;
  const barredNote = setText("#bid-barred", barred ?? "");
  barredNote.hidden = !barred || phase === "ended";
  const form = $("#bid-form");
  form.hidden = !user || phase === "ended" || Boolean(barred);
  $("#login-prompt").hidden = Boolean(user) || phase === "ended";
  $("#lot-watching").hidden = phase === "ended";
  renderWatch();
  if (phase === "open") followLead(lot, Boolean(leading));
  for (const control of form.elements) control.disabled = phase !== "open";
  if (phase === "upcoming" || phase === "opening") say("Bidding opens when the lot starts.", "info");
  else if (previous === "upcoming" || previous === "opening") say("");
  $("#buy-now").hidden = !buyNowAvailable(lot);
  setText("#buy-now-price", fmt(lot.buy_now_price));
  if ($("#buy-now").hidden) $("#buy-now-confirm").hidden = true;
  prefillAmount();
  if (user && !barred && lot.requires_registration && lot.auction && $("#registration").hidden) {
    $("#registration").hidden = false;
    registrationPanel($("#registration"), lot.auction);
  }
  tick();
}

function renderImage(lot) {
  if (state.image === lot.image) return;
  state.image = lot.image;
  const image = imageOrPlaceholder(lot, "lot-image");
  if (image.tagName === "IMG") image.alt = lot.title;
  $("#lot-media").replaceChildren(image);
}

function buyNowAvailable(lot) {
  return (
    lot.status === "open" &&
    lotPhase(lot).phase === "open" &&
    Boolean(lot.buy_now_price) &&
    (lot.current_price === null || compareMoney(lot.current_price, lot.buy_now_price) < 0)
  );
}

function tick() {
  const lot = state.lot;
  if (!lot) return;
  const { phase, label, remaining } = lotPhase(lot);
  if (phase !== state.phase) return render(); // the form, result and buttons follow the phase
  const counting = phase === "open" || phase === "upcoming";
  setText("#countdown-label", phase === "ending" || phase === "ended" ? "Ended" : label);
  setText("#countdown", counting ? duration(remaining) : phase === "ending" ? "0s" : "");
  const at = phase === "upcoming" || phase === "opening" ? lot.starts_at : phase === "ended" ? lot.closed_at : lot.ends_at;
  setText("#lot-ends-at", phase === "ending" ? "— waiting for the result…" : at ? `(${dateTime(at)})` : "");
  $("#countdown").dataset.phase = phase;
}

function canSeeUsernames() {
  const user = state.user;
  return Boolean(user && (user.is_staff || user.username === state.lot.seller));
}

async function refreshLot() {
  try {
    Object.assign(state.lot, await api.get(`/api/lots/${lotId}/`));
    render();
  } catch {
    // The alias stays: the page shows the username after its next read.
  }
}

// The start or end passed: the room announces the change; if it is slow, ask REST
// (reading a lot settles it when it is due).
function awaitClock() {
  const waiting = () => ["ending", "opening"].includes(lotPhase(state.lot).phase);
  setTimeout(async function check() {
    if (!waiting()) return;
    try {
      Object.assign(state.lot, await api.get(`/api/lots/${lotId}/`));
      render();
    } catch {
      // Still waiting: the next check tries again.
    }
    if (waiting()) setTimeout(check, 5000);
  }, 3000);
}

// The standing bids as the server has them now, replacing what the page holds
// (a fresh LOT_STATUS, or bids voided by staff).
function requestHistory() {
  state.replaceHistory = true;
  socket.send({ type: "GET_HISTORY", limit: HISTORY_SIZE });
}

function addBids(bids) {
  for (const bid of bids) state.bids.set(bid.id, { ...state.bids.get(bid.id), ...bid });
  const latest = [...state.bids.values()].sort((a, b) => b.id - a.id).slice(0, HISTORY_SIZE);
  $("#bid-history").replaceChildren(...latest.map(bidItem));
  $("#history-note").hidden = latest.length > 0;
}

function bidItem(bid) {
  // REST rows carry `is_you`; room frames carry the alias, the same text for every watcher.
  const mine = bid.is_you || (state.lot && isMine(state.lot, bid.bidder));
  return el(
    "li",
    { class: mine ? "bid bid-mine" : "bid", "data-bid-id": bid.id },
    el("span", { class: "bid-amount", text: fmt(bid.amount) }),
    el("span", { class: "bid-bidder", text: mine ? `${bid.bidder} (you)` : bid.bidder }),
    bid.is_proxy ? el("span", { class: "pill", text: "auto", title: "Placed automatically, up to the bidder's maximum" }) : null,
    bid.is_buy_now ? el("span", { class: "pill", text: "buy now" }) : null,
    el("time", { datetime: bid.created_at, text: whenShort(bid.created_at), title: dateTime(bid.created_at) }),
  );
}

function say(text, kind = "info", leading = null) {
  const message = setText("#bid-message", text);
  message.dataset.kind = kind;
  state.messageLeading = leading;
}

// The newest state wins: once the message speaks of your lead, it follows the lead as bids
// arrive, and an outbid notice about this lot goes once you lead again.
function followLead(lot, leading) {
  if (leading) dismissOutbidNotices();
  if (state.messageLeading === null || state.messageLeading === leading || !lot.high_bidder) return;
  const price = fmt(lot.current_price);
  if (leading) say(`You're the highest bidder again, at ${price}.`, "success", true);
  else say(`You've been outbid: the price is now ${price}.`, "warning", false);
}

function dismissOutbidNotices() {
  for (const notice of document.querySelectorAll(`#notices .notice[data-kind="outbid"][data-lot-id="${lotId}"]`)) notice.remove();
}

// An OUTBID notice may reach the page before the room's NEW_BID, or after a bid that took the lead back.
document.addEventListener("auction:notice", ({ detail: notice }) => {
  if (notice.type !== "OUTBID" || Number(notice.lot_id) !== lotId || !state.lot) return;
  const lot = state.lot;
  const ahead = lot.current_price !== null && notice.current_price && compareMoney(lot.current_price, notice.current_price) > 0;
  if (isMine(lot, lot.high_bidder) && ahead) return dismissOutbidNotices();
  if (state.messageLeading) say(`You've been outbid: the price is now ${fmt(notice.current_price)}.`, "warning", false);
});

function announce(text) {
  setText("#announcer", text);
}

function showMissing() {
  $("#lot").hidden = true;
  $("#lot-missing").hidden = false;
  $("#connection").hidden = true;
}

// The amount field holds the minimum bid, as the bidder would type it, until the bidder types in it.
function prefillAmount(force = false) {
  const input = $("#bid-amount");
  if (!state.lot || !(force || input.dataset.auto === "1" || input.value === "")) return;
  input.value = amountForInput(state.lot.min_next_bid, state.lot.currency_places);
  input.dataset.auto = "1";
}

// --- The room -------------------------------------------------------------------

function onFrame(frame) {
  if (chat.receive(frame)) return;
  switch (frame.type) {
    case "LOT_STATUS":
      serverClock.sync(frame.server_time);
      state.lot = frame.lot;
      render();
      requestHistory();
      return;
    case "PONG":
      serverClock.sync(frame.server_time);
      return tick();
    case "USERS_COUNT":
      setText("#lot-watchers", String(frame.count));
      return;
    case "BID_HISTORY":
      if (state.replaceHistory) state.bids.clear();
      state.replaceHistory = false;
      return addBids(frame.bids);
    case "BID_ACCEPTED": {
      const kind = settle(frame.request_id);
      if (kind) accepted(frame, kind);
      return;
    }
    case "BID_REJECTED":
      if (settle(frame.request_id)) refused(frame);
      return;
    case "ERROR":
      // A bid's ERROR carries its request_id; auth_required and rate_limited may not.
      if ((frame.request_id && settle(frame.request_id)) || (!frame.request_id && settleAll())) refused(frame);
      return;
  }
  if (!state.lot || !applyEvent(state.lot, frame)) return;
  if (frame.type === "NEW_BID") addBids([frame.bid]);
  if (frame.type === "LOT_EXTENDED") announce(`Bidding extended: it now ends at ${timeOfDay(frame.ends_at)}.`);
  if (frame.type === "LOT_OPENED") announce("Bidding is open.");
  if (frame.type === "AUCTION_ENDED") {
    announce(outcomeText(state.lot));
    // The room names the winner by alias; the seller and staff read their username over REST.
    if (state.lot.winner && canSeeUsernames()) refreshLot();
  }
  if (frame.type === "BIDS_VOIDED") {
    requestHistory();
    const price = frame.lot.current_price === null ? "no bids stand" : `the price is now ${fmt(frame.lot.current_price)}`;
    announce(`Staff voided ${frame.voided} bid(s) by ${frame.bidder}; ${price}.`);
  }
  render();
}

// --- Bidding ---------------------------------------------------------------------

function place(kind, body = {}) {
  const requestId = newRequestId();
  const overRest = () => {
    state.pending.set(requestId, { kind, timer: null });
    placeOverRest(kind, body, requestId);
  };
  busy(true);
  say(kind === "BUY_NOW" ? "Buying…" : "Placing your bid…");
  if (socket.live && socket.send({ type: kind, ...body, request_id: requestId })) {
    // No answer in time: retrying over REST with the same key cannot bid twice.
    state.pending.set(requestId, { kind, timer: setTimeout(overRest, ANSWER_TIMEOUT_MS) });
  } else {
    overRest();
  }
}

async function placeOverRest(kind, body, requestId) {
  const path = kind === "BUY_NOW" ? `/api/lots/${lotId}/buy-now/` : `/api/lots/${lotId}/bids/`;
  try {
    const outcome = await api.post(path, kind === "BUY_NOW" ? undefined : body, { "Idempotency-Key": requestId });
    if (settle(requestId)) accepted(outcome, kind);
    if (!socket.live) {
      state.lot = { ...state.lot, ...outcome.lot };
      render();
    }
  } catch (error) {
    if (settle(requestId)) refused({ code: error.code, message: error.message, min_next_bid: error.body.min_next_bid });
  }
}

// Returns the kind of the pending request it settles, or null if it was not pending.
function settle(requestId) {
  const entry = state.pending.get(requestId);
  if (!entry) return null;
  clearTimeout(entry.timer);
  state.pending.delete(requestId);
  busy(state.pending.size > 0);
  return entry.kind;
}

function settleAll() {
  const any = state.pending.size > 0;
  for (const requestId of [...state.pending.keys()]) settle(requestId);
  return any;
}

function busy(on) {
  $("#bid-submit").setAttribute("aria-disabled", String(on));
  $("#bid-form").dataset.busy = String(on);
}

function accepted(result, kind) {
  // Your alias on the lot: BID_ACCEPTED names it, a REST outcome's lot carries it.
  const alias = result.bid.bidder || result.lot?.my_alias;
  if (alias && state.lot && state.lot.my_alias !== alias) {
    state.lot.my_alias = alias;
    addBids([]);
  }
  const amount = fmt(result.bid.amount);
  let text;
  if (kind === "BUY_NOW") text = `You bought this lot for ${amount}.`;
  else if (!result.leading) text = `Your bid of ${amount} stands, but another bidder's maximum is higher: you've been outbid.`;
  else if (result.bid.max_amount) text = `You're the highest bidder at ${amount}, with a secret maximum of ${fmt(result.bid.max_amount)}.`;
  else text = `Your bid of ${amount} is the highest.`;
  say(result.replayed ? `Already placed. ${text}` : text, result.leading ? "success" : "warning", Boolean(result.leading));
  if (result.leading) dismissOutbidNotices();
  $("#bid-max").value = "";
  if (result.min_next_bid && state.lot) {
    state.lot.min_next_bid = result.min_next_bid;
    prefillAmount(true);
    setText("#min-next-bid", fmt(result.min_next_bid));
  }
}

function refused(refusal) {
  const text = REFUSALS[refusal.code]?.(refusal) ?? (refusal.message || "Your bid was not accepted.");
  say(text, "error");
  if (refusal.code === "bid_too_low" && refusal.min_next_bid && state.lot) {
    state.lot.min_next_bid = refusal.min_next_bid;
    prefillAmount(true);
    setText("#min-next-bid", fmt(refusal.min_next_bid));
  }
}

function setUpForm() {
  const amount = $("#bid-amount");
  const max = $("#bid-max");
  amount.addEventListener("input", () => delete amount.dataset.auto);
  $("#bid-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.pending.size) return;
    const form = $("#bid-form");
    const { currency, currency_places: places } = state.lot;
    // Typed as the page shows amounts; sent as plain decimal strings.
    const bid = parseAmount(amount.value, currency, places);
    const ceiling = max.value.trim() ? parseAmount(max.value, currency, places) : null;
    for (const input of [amount, max]) fieldError(form, input.name, "");
    let problem = null;
    if (bid.problem) problem = [amount, bid.problem];
    else if (ceiling?.problem) problem = [max, `${ceiling.problem} Or leave the maximum empty.`];
    else if (ceiling && compareMoney(ceiling.amount, bid.amount) < 0) problem = [max, "Your maximum must be at least your bid."];
    if (problem) {
      fieldError(form, problem[0].name, problem[1]);
      problem[0].focus();
      return say("");
    }
    place("NEW_BID", ceiling ? { amount: bid.amount, max_amount: ceiling.amount } : { amount: bid.amount });
  });
  $("#buy-now").addEventListener("click", () => {
    setText("#buy-now-confirm-price", fmt(state.lot.buy_now_price));
    $("#buy-now-confirm").hidden = false;
    $("#buy-now-yes").focus();
  });
  $("#buy-now-no").addEventListener("click", () => {
    $("#buy-now-confirm").hidden = true;
    $("#buy-now").focus();
  });
  $("#buy-now-yes").addEventListener("click", () => {
    $("#buy-now-confirm").hidden = true;
    place("BUY_NOW");
  });
  $("#watch-toggle").addEventListener("click", async () => {
    const watch = !state.watching;
    try {
      await (watch ? api.post(`/api/lots/${lotId}/watch/`) : api.delete(`/api/lots/${lotId}/watch/`));
      state.watching = watch;
      renderWatch();
    } catch (error) {
      say(error.message, "error");
    }
  });
}

function renderWatch() {
  const button = $("#watch-toggle");
  // An ended lot has nothing left to watch.
  button.hidden = !state.user || state.phase === "ended" || state.watching === null;
  button.setAttribute("aria-pressed", String(state.watching));
  setText("#watch-toggle", state.watching ? "Watching ✓" : "Watch this lot");
}

async function loadWatching() {
  try {
    // The lot carries no "watching" flag for the caller: look it up in the watchlist.
    state.watching = (await getAll("/api/users/me/watchlist/")).some((lot) => lot.id === lotId);
  } catch {
    state.watching = false;
  }
  renderWatch();
}

async function main() {
  setUpForm();
  state.user = await initPage();
  chat.start(state.user);
  try {
    const [lot, bids] = await Promise.all([api.get(`/api/lots/${lotId}/`), api.get(`/api/lots/${lotId}/bids/`)]);
    state.lot = lot;
    addBids(bids.results);
    render();
  } catch (error) {
    if (error.status === 404) return showMissing();
    showBanner(error.message); // the room's LOT_STATUS fills the page once it connects
  }
  if (state.user) loadWatching();
  // Logged in: each connection redeems a fresh single-use ticket (no token in the URL).
  socket.authenticated = Boolean(state.user);
  socket.start();
  setInterval(tick, 250);
}

main();
