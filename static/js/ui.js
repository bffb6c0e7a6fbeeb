// What every page shares: a safe DOM builder, the navigation's login state,
// the connection badge, and live notices from /ws/notifications/.
import { api, currentUser, logOut } from "./api.js";
import { money } from "./format.js";
import { LiveSocket } from "./socket.js";

// Builds an element. Children and `text` become text nodes: data never becomes HTML.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function setText(selector, text) {
  const node = $(selector);
  if (node && node.textContent !== text) node.textContent = text;
  return node;
}

// Only http(s) and same-site URLs reach an href or src.
export function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return ["http:", "https:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

export function loginUrl() {
  return `/login/?next=${encodeURIComponent(location.pathname + location.search)}`;
}

export function showBanner(text) {
  const banner = setText("#banner", text);
  banner.hidden = !text;
}

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting… updates will catch up",
  gone: "Not available",
};

// An onState handler that shows the socket's state in `selector`.
export function connectionBadge(selector) {
  return (state) => {
    const badge = setText(selector, CONNECTION_TEXT[state]);
    badge.dataset.state = state;
  };
}

// --- Forms ----------------------------------------------------------------------

// The form's own message line (its `.message`): what went wrong, or what was done.
export function formMessage(form, text, kind = "error") {
  const message = $(".message", form);
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = !text;
}

export function setBusy(form, busy) {
  form.querySelector("button[type=submit]").disabled = busy;
  form.setAttribute("aria-busy", String(busy));
}

// The message under field `name` (its `#<name>-error`), and the field marked invalid while there is one.
export function fieldError(form, name, text) {
  // The field's error line is the one it is described by (two forms of a page may share a field name).
  const input = form.elements[name];
  const described = (input.getAttribute("aria-describedby") || "").split(" ").find((id) => id.endsWith("-error"));
  document.getElementById(described ?? `${name}-error`).textContent = text;
  if (text) form.elements[name].setAttribute("aria-invalid", "true");
  else form.elements[name].removeAttribute("aria-invalid");
}

// The new password and its repetition agree; if not, says so under the repetition and focuses it.
export function newPasswordsMatch(form) {
  if (form.elements.new_password.value === form.elements.new_password_confirm.value) return true;
  fieldError(form, "new_password_confirm", "The two passwords do not match.");
  form.elements.new_password_confirm.focus();
  return false;
}

// The API's field errors under those of `names` they name: a 400's `errors`, or a rule's one `field`
// (`{code, detail, field}`); the first one marked gets the focus. Returns the names marked.
export function showFieldErrors(form, error, names) {
  const errors = error.body.errors ?? (error.body.field ? { [error.body.field]: error.body.detail } : {});
  const invalid = names.filter((name) => errors[name]);
  invalid.forEach((name) => fieldError(form, name, [].concat(errors[name]).join(" ")));
  if (invalid.length) form.elements[invalid[0]].focus();
  return invalid;
}

// --- Navigation and the session -------------------------------------------

export async function initPage() {
  let user = null;
  try {
    user = await currentUser();
  } catch (error) {
    showBanner(error.message);
  }
  for (const item of document.querySelectorAll("[data-auth]")) {
    item.hidden = item.dataset.auth !== (user ? "user" : "anon");
  }
  for (const link of document.querySelectorAll("a[data-login-link]")) link.href = loginUrl();
  if (user) {
    for (const name of document.querySelectorAll("[data-username]")) name.textContent = user.username;
    $("[data-logout]")?.addEventListener("click", async () => {
      try {
        await logOut();
        location.assign("/");
      } catch (error) {
        showBanner(error.message);
      }
    });
    startNotifications();
  }
  return user;
}

// --- Notices ----------------------------------------------------------------

export const NOTICE_TEXT = {
  OUTBID: (n) => `You've been outbid on “${n.title}”. The price is now ${money(n.current_price, n.currency)}.`,
  WON: (n) => `You won “${n.title}” for ${money(n.final_price, n.currency)}.`,
  LOT_SOLD: (n) => `“${n.title}” sold to ${n.winner} for ${money(n.final_price, n.currency)}.`,
  LOT_UNSOLD: (n) => `“${n.title}” ended without a sale.`,
  LOT_CANCELLED: (n) => `“${n.title}” was cancelled.`,
  ENDING_SOON: (n) => `“${n.title}” ends soon.`,
  BIDS_VOIDED: (n) => `Staff voided your bids on “${n.title}”.`,
  REGISTRATION_DECIDED: (n) => `Your registration for “${n.title}” is now ${n.status}.`,
};
const MAX_NOTICES = 3;

export function notify(text, { kind = "info", lotId = null } = {}) {
  const region = $("#notices");
  const notice = el(
    "div",
    { class: `notice notice-${kind}`, "data-kind": kind, "data-lot-id": lotId },
    el("p", { text }),
    lotId && location.pathname !== `/lots/${lotId}/` ? el("a", { href: `/lots/${Number(lotId)}/`, text: "View lot" }) : null,
    el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss", text: "×", onclick: () => notice.remove() }),
  );
  region.append(notice);
  while (region.children.length > MAX_NOTICES) region.firstElementChild.remove();
  setTimeout(() => notice.remove(), 20000);
}

function startNotifications() {
  const shown = new Set();
  let newestId = null;
  const show = (notice) => {
    if (!NOTICE_TEXT[notice.type] || shown.has(notice.id)) return;
    shown.add(notice.id);
    newestId = Math.max(newestId ?? 0, notice.id);
    notify(NOTICE_TEXT[notice.type](notice), { kind: notice.type.toLowerCase(), lotId: notice.lot_id });
    document.dispatchEvent(new CustomEvent("auction:notice", { detail: notice }));
  };
  const socket = new LiveSocket("/ws/notifications/", {
    authenticated: true,
    onFrame: show,
    onState: async (state) => {
      if (state !== "live") return;
      // The socket has no replay: catch up from the stored notifications.
      const page = await api.get("/api/users/me/notifications/").catch(() => null);
      const stored = (page?.results ?? []).map((n) => ({ ...n.payload, type: n.type, id: n.id }));
      if (newestId === null) newestId = Math.max(0, ...stored.map((n) => n.id));
      else stored.filter((n) => n.id > newestId).reverse().forEach(show);
    },
  });
  socket.start();
}
