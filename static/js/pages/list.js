// The lot list: open, upcoming and ended lots. Lots in a sale update live over
// their sale's socket; the lists themselves are re-read every few seconds.
import { api } from "../api.js";
import { serverClock } from "../format.js";
import { LotCard } from "../lots.js";
import { LiveSocket } from "../socket.js";
import { $, initPage, setText, showBanner } from "../ui.js";

const SECTIONS = {
  open: "/api/lots/?status=open&ordering=ends_at",
  upcoming: "/api/lots/?status=scheduled&ordering=starts_at",
  ended: "/api/lots/?status=closed&status=cancelled&ordering=-ends_at",
};
const POLL_MS = 15000;
const cards = new Map();
const saleSockets = new Map();
let user = null;
let refreshTimer = null;

async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const pages = await Promise.all(Object.values(SECTIONS).map((path) => api.get(path)));
    Object.keys(SECTIONS).forEach((name, index) => fill(name, pages[index].results));
    showBanner("");
    watchSales();
  } catch (error) {
    showBanner(error.message);
  }
  refreshTimer = setTimeout(refresh, POLL_MS);
}

function fill(name, lots) {
  const list = $(`#lots-${name}`);
  for (const lot of lots) {
    if (cards.has(lot.id)) cards.get(lot.id).update(lot);
    else cards.set(lot.id, new LotCard(lot, user));
  }
  const ids = lots.map((lot) => String(lot.id));
  // Rebuild only when the order changed, so a focused link keeps its focus.
  if (ids.join() !== [...list.children].map((card) => card.dataset.lotId).join()) {
    list.replaceChildren(...lots.map((lot) => cards.get(lot.id).element));
  }
  list.removeAttribute("aria-busy");
  $(`#lots-${name}-empty`).hidden = lots.length > 0;
}

// One socket per sale with open lots: its events carry each lot's id and seq.
function watchSales() {
  const slugs = new Set([...cards.values()].filter((c) => c.lot.status === "open" && c.lot.auction).map((c) => c.lot.auction));
  for (const slug of slugs) {
    if (saleSockets.has(slug)) continue;
    const socket = new LiveSocket(`/ws/auctions/${encodeURIComponent(slug)}/`, {
      authenticated: Boolean(user),
      onFrame: (frame) => {
        if (frame.type === "AUCTION_STATUS") {
          serverClock.sync(frame.server_time);
          for (const lot of frame.lots) cards.get(lot.id)?.update(lot);
        } else {
          cards.get(frame.lot_id)?.apply(frame);
        }
      },
      onState: showConnection,
    });
    saleSockets.set(slug, socket);
    socket.start();
  }
  showConnection();
}

function showConnection() {
  const states = [...saleSockets.values()].map((socket) => socket.state);
  const state = states.some((s) => s !== "live") ? "reconnecting" : "live";
  const badge = setText("#connection", state === "live" ? "Live" : "Reconnecting… updates will catch up");
  badge.dataset.state = state;
  badge.hidden = states.length === 0;
}

function tick() {
  let ranOut = false;
  for (const card of cards.values()) if (card.element.isConnected && card.tick()) ranOut = true;
  // A lot just ended or opened: re-read the lists shortly.
  if (ranOut) setTimeout(refresh, 2000);
}

async function main() {
  user = await initPage();
  await refresh();
  setInterval(tick, 1000);
}

main();
