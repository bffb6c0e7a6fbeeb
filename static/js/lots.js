// Lots as the pages show them: room events applied to a lot, its phase and
// countdown, the card of the list and sale pages, and sale registration.
import { api, ApiError } from "./api.js";
import { duration, money, serverClock } from "./format.js";
import { el, safeUrl } from "./ui.js";

// Applies a lot room event (NEW_BID, LOT_EXTENDED, ...) to `lot`; false if it is no lot event.
export function applyEvent(lot, frame) {
  switch (frame.type) {
    case "NEW_BID":
    case "LOT_OPENED":
    case "LOT_UPDATED":
    case "AUCTION_ENDED":
    case "BIDS_VOIDED":
      Object.assign(lot, frame.lot, { id: lot.id });
      break;
    case "LOT_EXTENDED":
      lot.ends_at = frame.ends_at;
      break;
    default:
      return false;
  }
  if (Number.isInteger(frame.seq)) lot.seq = frame.seq;
  return true;
}

// Where the lot stands at `now`: { phase, label, remaining } with phase "upcoming",
// "opening" (the start passed, the clock is opening it), "open", "ending" (the end
// passed, the result is on its way) or "ended".
export function lotPhase(lot, now = serverClock.now()) {
  if (lot.status === "scheduled" || lot.status === "draft") {
    const remaining = Date.parse(lot.starts_at) - now;
    return remaining > 0 ? { phase: "upcoming", label: "Starts in", remaining } : { phase: "opening", label: "Opening…", remaining: 0 };
  }
  if (lot.status === "open") {
    const remaining = Date.parse(lot.ends_at) - now;
    return remaining > 0 ? { phase: "open", label: "Ends in", remaining } : { phase: "ending", label: "Ending…", remaining: 0 };
  }
  return { phase: "ended", label: lot.status === "cancelled" ? "Cancelled" : "Ended", remaining: 0 };
}

// Bidders appear by their alias on the lot ("Bidder 3", "Paddle 12"); `my_alias` is the viewer's own.
export function isMine(lot, alias) {
  return Boolean(alias && lot.my_alias && alias === lot.my_alias);
}

export function outcomeText(lot) {
  if (lot.status === "cancelled") return "This lot was cancelled.";
  if (lot.winner && isMine(lot, lot.winner)) return `You won this lot for ${money(lot.final_price, lot.currency)}.`;
  // The seller and staff are sent the winner's username; everyone else their alias.
  if (lot.winner) return `Sold to ${lot.winner_username || lot.winner} for ${money(lot.final_price, lot.currency)}.`;
  if (lot.has_reserve && !lot.reserve_met) return "Ended without a sale: the reserve was not met.";
  return "Ended without a sale.";
}

export function priceText(lot) {
  if (lot.status === "closed" && lot.final_price) return money(lot.final_price, lot.currency);
  return money(lot.current_price ?? lot.starting_price, lot.currency);
}

export function imageOrPlaceholder(lot, className) {
  const src = lot.image ? safeUrl(lot.image) : null;
  return src
    ? el("img", { class: className, src, alt: "", loading: "lazy" })
    : el("div", { class: `${className} placeholder`, "aria-hidden": "true" });
}

// A lot in a grid of cards, updated in place by `update()` and `tick()`.
export class LotCard {
  constructor(lot, user = null) {
    this.lot = { ...lot };
    this.user = user;
    this.price = el("span", { class: "card-price" });
    this.detail = el("span", { class: "card-detail" });
    this.when = el("span", { class: "card-when" });
    this.element = el(
      "li",
      { class: "card", "data-lot-id": lot.id },
      imageOrPlaceholder(lot, "card-image"),
      el(
        "div",
        { class: "card-body" },
        el("h3", { class: "card-title" }, el("a", { href: `/lots/${Number(lot.id)}/`, text: lot.title })),
        el("p", { class: "card-price-line" }, this.price, " ", this.detail),
        el("p", { class: "card-when-line" }, this.when),
      ),
    );
    this.render();
  }

  // A fresher REST representation; an older one (lower seq) than the events applied is ignored.
  update(changes) {
    if (changes.seq < this.lot.seq) return;
    const before = this.lot.current_price;
    Object.assign(this.lot, changes);
    this.render();
    if (this.lot.current_price !== before) flash(this.price);
  }

  apply(frame) {
    if (Number.isInteger(frame.seq) && frame.seq <= this.lot.seq) return;
    const before = this.lot.current_price;
    if (!applyEvent(this.lot, frame)) return;
    this.render();
    if (this.lot.current_price !== before) flash(this.price);
  }

  render() {
    const lot = this.lot;
    this.price.textContent = priceText(lot);
    const bids = lot.bid_count === 1 ? "1 bid" : `${lot.bid_count} bids`;
    this.detail.textContent = lot.bid_count ? `· ${bids}` : lot.status === "open" ? "· starting price" : "";
    this.tick();
  }

  // Returns true when a countdown just ran out (the lot is due to open or close).
  tick(now = serverClock.now()) {
    const { phase, label, remaining } = lotPhase(this.lot, now);
    const due = phase === "ending" || phase === "opening";
    const text = phase === "ended" ? outcomeText(this.lot) : due ? label : `${label} ${duration(remaining)}`;
    if (this.when.textContent !== text) this.when.textContent = text;
    this.element.dataset.phase = phase;
    const ranOut = due && this.lastPhase !== phase;
    this.lastPhase = phase;
    return ranOut;
  }
}

export function flash(node) {
  node.classList.remove("flash");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash");
}

// --- Registration for sales that require it ----------------------------------

const REGISTRATION_TEXT = {
  approved: (r) => `You're registered to bid in this sale (paddle ${r.paddle_number}).`,
  pending: () => "Your registration for this sale is awaiting approval.",
  rejected: () => "Your registration for this sale was declined.",
  revoked: () => "Your registration for this sale was revoked.",
};

// Fills `container` with the user's registration status, or a button to register;
// staff decisions arrive as notices and update it in place.
export async function registrationPanel(container, auctionSlug) {
  const show = (registration) => {
    const text = (REGISTRATION_TEXT[registration.status] ?? (() => registration.status))(registration);
    container.replaceChildren(el("p", { class: `registration registration-${registration.status}`, text }));
  };
  document.addEventListener("auction:notice", ({ detail: notice }) => {
    if (notice.type === "REGISTRATION_DECIDED" && notice.auction === auctionSlug) show(notice);
  });
  try {
    const mine = await api.get("/api/users/me/registrations/");
    const existing = mine.results.find((r) => r.auction === auctionSlug);
    if (existing) return show(existing);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
  }
  const message = el("p", { class: "message", role: "status" });
  const button = el("button", {
    type: "button",
    text: "Register to bid in this sale",
    onclick: async () => {
      button.disabled = true;
      try {
        show(await api.post(`/api/auctions/${encodeURIComponent(auctionSlug)}/register/`));
      } catch (error) {
        message.textContent = error.message;
        button.disabled = false;
      }
    },
  });
  container.replaceChildren(el("p", { text: "This sale requires registration before you can bid." }), button, message);
}
