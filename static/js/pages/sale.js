// A sale: all its lots, live over /ws/auctions/<slug>/.
import { api } from "../api.js";
import { dateTime, serverClock } from "../format.js";
import { LotCard, registrationPanel } from "../lots.js";
import { LiveSocket } from "../socket.js";
import { $, connectionBadge, initPage, setText, showBanner } from "../ui.js";

const slug = $("main").dataset.slug;
const cards = new Map();
let user = null;

function fill(lots) {
  for (const lot of lots) {
    if (cards.has(lot.id)) cards.get(lot.id).update(lot);
    else cards.set(lot.id, new LotCard(lot, user));
  }
  const list = $("#sale-lots");
  if (lots.map((lot) => String(lot.id)).join() !== [...list.children].map((card) => card.dataset.lotId).join()) {
    list.replaceChildren(...lots.map((lot) => cards.get(lot.id).element));
  }
  $("#sale-lots-empty").hidden = lots.length > 0;
}

function showSale(auction) {
  document.title = `${auction.title} · Auctions`;
  setText("#sale-title", auction.title);
  setText("#sale-description", auction.description || "");
  const dates = [auction.starts_at && `Starts ${dateTime(auction.starts_at)}`, auction.ends_at && `Ends ${dateTime(auction.ends_at)}`];
  setText("#sale-dates", dates.filter(Boolean).join(" · "));
  $("#sale").removeAttribute("aria-busy");
}

function showMissing() {
  $("#sale").hidden = true;
  $("#sale-missing").hidden = false;
}

const socket = new LiveSocket(`/ws/auctions/${encodeURIComponent(slug)}/`, {
  onFrame: (frame) => {
    if (frame.type === "AUCTION_STATUS") {
      serverClock.sync(frame.server_time);
      fill(frame.lots);
    } else {
      cards.get(frame.lot_id)?.apply(frame);
    }
  },
  onState: (state) => {
    connectionBadge("#connection")(state);
    if (state === "gone") showMissing();
  },
});

async function main() {
  user = await initPage();
  try {
    const auction = await api.get(`/api/auctions/${encodeURIComponent(slug)}/`);
    showSale(auction);
    fill(auction.lots);
    if (user && auction.requires_registration) {
      $("#registration").hidden = false;
      registrationPanel($("#registration"), auction.slug);
    }
  } catch (error) {
    if (error.status === 404) return showMissing();
    showBanner(error.message);
  }
  socket.authenticated = Boolean(user);
  socket.start();
  setInterval(() => cards.forEach((card) => card.tick()), 1000);
}

main();
