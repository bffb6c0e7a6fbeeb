// My bids, won lots and watchlist.
import { getAll } from "../api.js";
import { dateTime, money } from "../format.js";
import { LotCard } from "../lots.js";
import { $, el, initPage, loginUrl, showBanner } from "../ui.js";

const STATUS_TEXT = { draft: "Draft", scheduled: "Upcoming", open: "Open", closed: "Ended", cancelled: "Cancelled" };
const cards = [];

function bidRow(bid) {
  const notes = [bid.is_proxy && "auto", bid.is_buy_now && "buy now", bid.raises_max_only && "maximum raised"].filter(Boolean);
  return el(
    "tr",
    {},
    el("td", {}, el("a", { href: `/lots/${Number(bid.lot)}/`, text: bid.lot_title })),
    el("td", { class: "num" }, money(bid.amount, bid.currency), ...notes.map((note) => el("span", { class: "pill", text: note }))),
    el("td", { class: "num", text: money(bid.max_amount, bid.currency) }),
    el("td", { text: STATUS_TEXT[bid.lot_status] ?? bid.lot_status }),
    el("td", {}, el("time", { datetime: bid.created_at, text: dateTime(bid.created_at) })),
  );
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
  try {
    const [bids, won, watchlist] = await Promise.all(
      ["/api/users/me/bids/", "/api/users/me/won/", "/api/users/me/watchlist/"].map((path) => getAll(path, 2)),
    );
    $("#my-bids tbody").replaceChildren(...bids.map(bidRow));
    $("#my-bids").hidden = bids.length === 0;
    $("#my-bids-empty").hidden = bids.length > 0;
    showCards("my-won", won, user);
    showCards("my-watchlist", watchlist, user);
  } catch (error) {
    showBanner(error.message);
  }
  setInterval(() => cards.forEach((card) => card.tick()), 1000);
}

main();
