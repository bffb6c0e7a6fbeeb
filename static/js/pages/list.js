// The lot list. Without a search or filter: open, upcoming and ended lots, a
// section each. With one: the matching lots, a page at a time. The whole state
// is the URL's query string (search, status, auction, ordering, page): a reload
// or a shared link shows the same lots, and back and forward walk through the
// earlier ones. Lots in a sale update live over their sale's socket; the lists
// themselves are re-read every few seconds.
import { api, getAll } from "../api.js";
import { serverClock } from "../format.js";
import { LotCard } from "../lots.js";
import { LiveSocket } from "../socket.js";
import { $, el, initPage, setText, showBanner } from "../ui.js";

const OVERVIEW = {
  open: "/api/lots/?status=open&ordering=ends_at",
  upcoming: "/api/lots/?status=scheduled&ordering=starts_at",
  ended: "/api/lots/?status=closed&status=cancelled&ordering=-ends_at",
};
// The page's statuses: the API's ones they stand for, and the order each reads best in.
const STATUSES = {
  open: { api: ["open"], ordering: "ends_at", label: "open now" },
  upcoming: { api: ["scheduled"], ordering: "starts_at", label: "upcoming" },
  ended: { api: ["closed", "cancelled"], ordering: "-ends_at", label: "ended" },
};
const ORDERINGS = ["-created_at", "price", "-price"];
const NO_FILTERS = { search: "", status: "", auction: "", ordering: "", page: 1 };
const POLL_MS = 15000;
const cards = new Map();
const saleSockets = new Map();
const saleTitles = new Map();
const form = $("#lot-filters");
let user = null;
let state = readState(location.search);
let refreshTimer = null;
// Each read of the lists takes a number; an answer that a later read overtook is dropped.
let latestRead = 0;

// --- The state in the URL -------------------------------------------------------

// Values the page does not offer fall back to the defaults: the controls always show what is listed.
function readState(query) {
  const params = new URLSearchParams(query);
  const status = params.get("status") ?? "";
  const ordering = params.get("ordering") ?? "";
  const page = Number(params.get("page"));
  return {
    search: (params.get("search") ?? "").trim(),
    status: Object.hasOwn(STATUSES, status) ? status : "",
    auction: params.get("auction") ?? "",
    ordering: ORDERINGS.includes(ordering) ? ordering : "",
    page: Number.isInteger(page) && page > 1 ? page : 1,
  };
}

function stateUrl(next) {
  const params = new URLSearchParams();
  for (const key of ["search", "status", "auction", "ordering"]) if (next[key]) params.set(key, next[key]);
  if (next.page > 1) params.set("page", String(next.page));
  const query = params.toString();
  return query ? `${location.pathname}?${query}` : location.pathname;
}

const isFiltered = (s) => Boolean(s.search || s.status || s.auction || s.ordering || s.page > 1);

function resultsPath(s) {
  const params = new URLSearchParams();
  if (s.search) params.set("search", s.search);
  for (const status of STATUSES[s.status]?.api ?? []) params.append("status", status);
  if (s.auction) params.set("auction", s.auction);
  params.set("ordering", s.ordering || STATUSES[s.status]?.ordering || "ends_at");
  if (s.page > 1) params.set("page", String(s.page));
  return `/api/lots/?${params}`;
}

function navigate(next, { replace = false } = {}) {
  state = next;
  const url = stateUrl(next);
  if (replace) history.replaceState(null, "", url);
  else if (url !== location.pathname + location.search) history.pushState(null, "", url);
  showForm();
  refresh();
}

// --- Reading and showing the lists ------------------------------------------------

async function refresh() {
  clearTimeout(refreshTimer);
  const asked = state;
  const read = ++latestRead;
  showMode(isFiltered(asked));
  try {
    const show = isFiltered(asked) ? await readResults(asked) : await readOverview();
    if (read !== latestRead) return;
    show();
    showBanner("");
    forgetHiddenCards();
    watchSales();
  } catch (error) {
    if (read !== latestRead) return;
    // The page is past the last one (lots ended or went since the link was made): show the first.
    if (error.status === 404 && asked.page > 1) return navigate({ ...asked, page: 1 }, { replace: true });
    showBanner(error.message);
  }
  refreshTimer = setTimeout(refresh, POLL_MS);
}

async function readOverview() {
  const names = Object.keys(OVERVIEW);
  const pages = await Promise.all(names.map((name) => api.get(OVERVIEW[name])));
  return () =>
    names.forEach((name, index) => {
      fill(name, pages[index].results);
      const seeAll = $(`#lots-${name}-all`);
      seeAll.textContent = `See all ${pages[index].count}`;
      seeAll.hidden = !pages[index].next;
    });
}

async function readResults(asked) {
  const data = await api.get(resultsPath(asked));
  return () => {
    fill("results", data.results);
    const noun = data.count === 1 ? "lot" : "lots";
    setText("#results-heading", asked.search ? `${data.count} ${noun} matching “${asked.search}”` : `${data.count} ${noun}`);
    setText("#results-empty-text", `No lots match ${describe(asked)}.`);
    showPager(asked.page, data);
  };
}

function describe(s) {
  const parts = [];
  if (s.search) parts.push(`“${s.search}”`);
  if (s.status) parts.push(STATUSES[s.status].label);
  if (s.auction) parts.push(`in ${saleTitles.get(s.auction) ?? s.auction}`);
  return parts.length ? parts.join(", ") : "these filters";
}

function showMode(filtered) {
  const [shown, hidden] = filtered ? ["#results", "#overview"] : ["#overview", "#results"];
  $(shown).hidden = false;
  $(hidden).hidden = true;
  // Cards out of sight are neither ticked nor watched.
  for (const list of $(hidden).querySelectorAll(".cards")) {
    list.replaceChildren();
    list.setAttribute("aria-busy", "true");
  }
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

function forgetHiddenCards() {
  for (const [id, card] of cards) if (!card.element.isConnected) cards.delete(id);
}

function showPager(page, data) {
  // The API's page size, from a full page (one with a next) or from those before this last one.
  const perPage = data.next ? data.results.length : page > 1 ? (data.count - data.results.length) / (page - 1) : data.count;
  const pages = Math.max(1, Math.ceil(data.count / Math.max(perPage, 1)));
  $("#pager").hidden = pages <= 1;
  setText("#pager-position", `Page ${page} of ${pages}`);
  pagerLink("#pager-previous", data.previous ? page - 1 : null);
  pagerLink("#pager-next", data.next ? page + 1 : null);
}

function pagerLink(selector, page) {
  const link = $(selector);
  if (page === null) {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
  } else {
    link.href = stateUrl({ ...state, page });
    link.removeAttribute("aria-disabled");
  }
}

// --- The form ------------------------------------------------------------------------

function showForm() {
  const { search, status, auction, ordering } = form.elements;
  search.value = state.search;
  status.value = state.status;
  ordering.value = state.ordering;
  if (state.auction && !saleTitles.has(state.auction)) addSale(state.auction, state.auction);
  auction.value = state.auction;
}

function addSale(slug, title) {
  saleTitles.set(slug, title);
  form.elements.auction.append(el("option", { value: slug, text: title }));
  $("#filter-auction-field").hidden = false;
}

async function loadSales() {
  try {
    for (const sale of await getAll("/api/auctions/")) if (!saleTitles.has(sale.slug)) addSale(sale.slug, sale.title);
  } catch {
    // Without the list of sales the page works on; the filter offers only the one in the URL.
  }
  form.elements.auction.value = state.auction;
}

const formState = () => ({
  search: form.elements.search.value.trim(),
  status: form.elements.status.value,
  auction: form.elements.auction.value,
  ordering: form.elements.ordering.value,
  page: 1,
});

function followInPage(event) {
  const link = event.target.closest("a[href]");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(readState(new URL(link.href).search));
  if (link.closest("#pager")) $("#results").scrollIntoView({ block: "start" });
}

function listen() {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(formState());
  });
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => navigate(formState()));
  for (const button of document.querySelectorAll("#clear-filters, #clear-filters-empty")) {
    button.addEventListener("click", () => navigate(NO_FILTERS));
  }
  for (const links of document.querySelectorAll("#pager, .see-all")) links.addEventListener("click", followInPage);
  window.addEventListener("popstate", () => {
    state = readState(location.search);
    showForm();
    refresh();
  });
}

// --- Live updates ----------------------------------------------------------------------

// One socket per sale with open lots on show: its events carry each lot's id and seq.
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
  const overall = states.some((s) => s !== "live") ? "reconnecting" : "live";
  const badge = setText("#connection", overall === "live" ? "Live" : "Reconnecting… updates will catch up");
  badge.dataset.state = overall;
  badge.hidden = states.length === 0;
}

function tick() {
  let ranOut = false;
  for (const card of cards.values()) if (card.element.isConnected && card.tick()) ranOut = true;
  // A lot just ended or opened: re-read the lists shortly.
  if (ranOut) setTimeout(refresh, 2000);
}

async function main() {
  // A URL with values the page does not offer is shown as what it lists.
  history.replaceState(null, "", stateUrl(state));
  showForm();
  listen();
  user = await initPage();
  await Promise.all([loadSales(), refresh()]);
  setInterval(tick, 1000);
}

main();
