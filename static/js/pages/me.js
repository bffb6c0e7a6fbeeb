// My bids (one row per lot, with where you stand), won lots and watchlist.
import { getAll } from "../api.js";
import { compareMoney, dateTime, money, serverClock } from "../format.js";
import { LotCard } from "../lots.js";
import { $, el, initPage, loginUrl, showBanner } from "../ui.js";

const STANDING_TEXT = { leading: "Winning", outbid: "Outbid", won: "Won", lost: "Lost", cancelled: "Cancelled" };
// The notices that change where you stand on a lot: the table is read again when one arrives.
const STANDING_NOTICES = new Set(["OUTBID", "WON", "LOT_CANCELLED", "BIDS_VOIDED"]);
const cards = [];

function biddingRow(lot) {
  // Your maximum is yours alone to see; shown only when it is above your bid.
  const maximum =
    compareMoney(lot.my_max_amount, lot.my_highest_bid) > 0
      ? el("span", { class: "max-note", text: `max ${money(lot.my_max_amount, lot.currency)}` })
      : null;
  const end = lot.status === "open" ? lot.ends_at : (lot.closed_at ?? lot.ends_at);
  return el(
    "tr",
    { "data-lot-id": lot.id },
    el("td", {}, el("a", { href: `/lots/${Number(lot.id)}/`, text: lot.title })),
    // The labels head the figures where a phone shows each row as a card.
    el("td", { class: "num", "data-label": "Your bid" }, money(lot.my_highest_bid, lot.currency), maximum),
    el("td", { class: "num", "data-label": "Current price", text: money(lot.current_price, lot.currency) }),
    el(
      "td",
      { "data-label": "Standing" },
      el("span", { class: "pill", "data-standing": lot.standing, text: STANDING_TEXT[lot.standing] ?? lot.standing }),
    ),
    el("td", { "data-label": "End" }, el("time", { datetime: end, text: dateTime(end) })),
  );
}

let biddingReads = 0;
// A lot you bid on ends: you won or lost it, and no notice tells a loser. The table is read again just after
// the soonest end (longer waits are cut into hours, so a timer never overflows).
const AFTER_END_MS = 2000;
const LONGEST_WAIT_MS = 3_600_000;
let nextEnd = null;

function readAgainAfterTheNextEnd(lots) {
  clearTimeout(nextEnd);
  const ends = lots.filter((lot) => lot.status === "open").map((lot) => Date.parse(lot.ends_at));
  if (!ends.length) return;
  const wait = Math.min(Math.max(Math.min(...ends) - serverClock.now(), 0) + AFTER_END_MS, LONGEST_WAIT_MS);
  nextEnd = setTimeout(() => showBidding().catch((error) => showBanner(error.message)), wait);
}

async function showBidding() {
  const read = ++biddingReads;
  const lots = await getAll("/api/users/me/bidding/", 2);
  // Notices can come in quick succession: an older answer never overwrites a newer one.
  if (read !== biddingReads) return;
  $("#my-bids tbody").replaceChildren(...lots.map(biddingRow));
  $("#my-bids").hidden = lots.length === 0;
  $("#my-bids-empty").hidden = lots.length > 0;
  readAgainAfterTheNextEnd(lots);
}

function showCards(id, lots, user) {
  const list = $(`#${id}`);
  list.replaceChildren(
    ...lots.map((lot) => {
      const card = new LotCard(lot, user);
      cards.push(card);
      return card.element;
    }),
  );
  $(`#${id}-empty`).hidden = lots.length > 0;
}

async function main() {
  const user = await initPage();
  if (!user) return location.replace(loginUrl());
  document.addEventListener("auction:notice", (event) => {
    if (STANDING_NOTICES.has(event.detail.type)) showBidding().catch((error) => showBanner(error.message));
  });
  try {
    const [won, watchlist] = await Promise.all([
      getAll("/api/users/me/won/", 2),
      getAll("/api/users/me/watchlist/", 2),
      showBidding(),
    ]);
    showCards("my-won", won, user);
    showCards("my-watchlist", watchlist, user);
  } catch (error) {
    showBanner(error.message);
  }
  setInterval(() => cards.forEach((card) => card.tick()), 1000);
}

main();
