// The user's notifications, newest first, each linking to its lot (or sale), a page at a time.
import { api } from "../api.js";
import { dateTime } from "../format.js";
import { $, NOTICE_TEXT, el, initPage, loginUrl, showBanner } from "../ui.js";

let nextPage = "/api/users/me/notifications/";

function where(notification) {
  if (notification.lot) return el("a", { href: `/lots/${Number(notification.lot)}/`, text: "View lot" });
  const sale = notification.payload.auction;
  return sale ? el("a", { href: `/auctions/${encodeURIComponent(sale)}/`, text: "View sale" }) : null;
}

function item(notification) {
  const text = NOTICE_TEXT[notification.type];
  return el(
    "li",
    { class: "panel", "data-type": notification.type },
    el("p", { text: text ? text(notification.payload) : notification.type }),
    el("time", { class: "muted", datetime: notification.created_at, text: dateTime(notification.created_at) }),
    where(notification),
  );
}

async function showNextPage() {
  const button = $("#notifications-older");
  button.disabled = true;
  try {
    const page = await api.get(nextPage);
    $("#notification-list").append(...page.results.map(item));
    nextPage = page.next ? new URL(page.next).pathname + new URL(page.next).search : null;
    $("#notifications-empty").hidden = $("#notification-list").children.length > 0;
  } catch (error) {
    showBanner(error.message);
  }
  button.hidden = !nextPage;
  button.disabled = false;
}

async function main() {
  const user = await initPage();
  if (!user) return location.replace(loginUrl());
  $("#notifications-older").addEventListener("click", showNextPage);
  await showNextPage();
}

main();
