// The lot's chat: the recent messages over REST, then live from the lot's room. Sending and
// hiding go over the room's socket when it is live, over REST otherwise.
import { api } from "../../api.js";
import { dateTime, whenShort } from "../../format.js";
import { newRequestId } from "../../socket.js";
import { $, el, setText } from "../../ui.js";

// REST's page size, and what GET_CHAT asks for, so both reads cover the same messages.
const HISTORY_SIZE = 20;
const SHOWN = 100;
const ANSWER_TIMEOUT_MS = 8000;

const SESSION_ENDED = () => "Your session has ended. Log in again to chat.";
const MALFORMED = () => "The page sent a request the server did not understand. Reload the page and try again.";
// What a person reads for each refusal, from an ERROR frame or a REST error.
const PROBLEMS = {
  invalid_text: (problem) => problem.message || "Write a message first.",
  text_too_long: (problem) => `Your message is too long. ${problem.message || ""}`.trim(),
  rate_limited: () => "You're sending messages too fast. Wait a minute and try again.",
  throttled: () => "Too many requests. Wait a moment and try again.",
  auth_required: SESSION_ENDED,
  not_authenticated: SESSION_ENDED,
  session_ended: SESSION_ENDED,
  account_inactive: () => "This account is no longer active.",
  not_lot_manager: () => "Only the seller or staff can hide messages.",
  chat_message_not_found: () => "That message is no longer in the chat.",
  lot_not_found: () => "This lot no longer exists.",
  service_unavailable: () => "The auction service is briefly unavailable. Try again in a moment.",
  network_error: () => "Can't reach the server. Check your connection and try again.",
  invalid_json: MALFORMED,
  invalid_message: MALFORMED,
  unknown_type: MALFORMED,
  invalid_limit: MALFORMED,
  binary_not_supported: MALFORMED,
};

const problemText = (problem) => PROBLEMS[problem.code]?.(problem) ?? (problem.message || "That did not work.");

export class LotChat {
  constructor({ lotId, socket }) {
    Object.assign(this, { lotId, socket });
    this.user = null;
    this.canHide = false;
    this.messages = new Map();
    this.items = new Map(); // each shown message's <li>, kept so that focus survives new messages
    this.hiddenIds = new Set(); // a history read that began before a CHAT_HIDDEN must not bring the message back
    // The request awaiting its answer ({kind: "send", text} or {kind: "hide", id}); `timer` is null over REST.
    this.waiting = null;
    $("#chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  start(user) {
    this.user = user;
    $("#chat-form").hidden = !user;
    $("#chat-login").hidden = Boolean(user);
    this.load();
  }

  // The seller and staff get a Hide button on each message.
  setLot(lot) {
    // A draft is seen only by its seller and staff, and has no chat (the server answers lot_not_found).
    $("#chat").hidden = lot.status === "draft";
    const canHide = Boolean(this.user && (this.user.is_staff || this.user.username === lot.seller));
    if (canHide === this.canHide) return;
    this.canHide = canHide;
    $("#chat-list").replaceChildren();
    this.items.clear();
    this.render();
  }

  // Each connection, the first or after a drop: chat frames carry no seq, so read again what may be missed.
  connected() {
    this.socket.send({ type: "GET_CHAT", limit: HISTORY_SIZE });
  }

  // Takes the chat's frames, and the ERRORs that answer the chat; returns whether it took the frame.
  receive(frame) {
    switch (frame.type) {
      case "CHAT_HISTORY":
        this.merge(frame.messages, frame.messages.length < HISTORY_SIZE);
        return true;
      case "CHAT_MESSAGE":
        // The room echoes your own message: that is the answer to CHAT.
        if (this.waiting?.kind === "send" && this.waiting.timer && frame.user === this.user?.username) this.sent();
        this.add(frame);
        return true;
      case "CHAT_HIDDEN":
        if (this.waiting?.kind === "hide" && this.waiting.id === frame.id) this.settle();
        this.remove(frame.id);
        return true;
      case "ERROR":
        // An ERROR names the request it answers. One without (the socket's own message rate) is the chat's while
        // it awaits an answer (a pending bid then falls back to REST, which answers it for sure).
        if (frame.request_id ? frame.request_id !== this.waiting?.requestId : !this.waiting?.timer) return false;
        this.refused(frame);
        return true;
    }
    return false;
  }

  async load() {
    try {
      const page = await api.get(`/api/lots/${this.lotId}/chat/`);
      this.merge(page.results, page.next === null);
    } catch {
      // The room's CHAT_HISTORY fills the chat once the socket connects.
    }
  }

  // A read of the newest messages is the truth for the ids it spans (all of them when it is `complete`):
  // a message held in that span but missing from it was hidden meanwhile. Newer live ones stay.
  merge(messages, complete) {
    const ids = new Set(messages.map((message) => message.id));
    const oldest = complete ? 0 : Math.min(...ids);
    const newest = Math.max(0, ...ids);
    for (const id of this.messages.keys()) {
      if (id >= oldest && id <= newest && !ids.has(id)) this.messages.delete(id);
    }
    for (const message of messages) if (!this.hiddenIds.has(message.id)) this.messages.set(message.id, message);
    this.render();
  }

  add(message) {
    if (this.hiddenIds.has(message.id)) return;
    this.messages.set(message.id, message);
    this.render();
  }

  remove(id) {
    this.hiddenIds.add(id);
    this.messages.delete(id);
    this.render();
  }

  render() {
    const list = $("#chat-list");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const shown = [...this.messages.values()].sort((a, b) => a.id - b.id).slice(-SHOWN);
    const keep = new Set(shown.map((message) => message.id));
    for (const [id, item] of this.items) {
      if (keep.has(id)) continue;
      item.remove();
      this.items.delete(id);
    }
    // Oldest first; only new or moved items are inserted, so a focused Hide button keeps its focus.
    let previous = null;
    for (const message of shown) {
      if (!this.items.has(message.id)) this.items.set(message.id, this.item(message));
      const item = this.items.get(message.id);
      const place = previous ? previous.nextSibling : list.firstChild;
      if (item !== place) list.insertBefore(item, place);
      previous = item;
    }
    $("#chat-empty").hidden = shown.length > 0;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  item(message) {
    const mine = this.user && message.user === this.user.username;
    const classes = ["chat-entry", message.is_seller ? "chat-from-seller" : null, mine ? "chat-mine" : null];
    return el(
      "li",
      { class: classes.filter(Boolean).join(" "), "data-message-id": message.id },
      el(
        "p",
        { class: "chat-meta" },
        el("strong", { class: "chat-author", text: mine ? `${message.user} (you)` : message.user }),
        message.is_seller ? el("span", { class: "pill chat-seller", text: "Seller" }) : null,
        el("time", { datetime: message.created_at, text: whenShort(message.created_at), title: dateTime(message.created_at) }),
        this.canHide
          ? el("button", { type: "button", class: "chat-hide", text: "Hide", onclick: () => this.hide(message.id) })
          : null,
      ),
      el("p", { class: "chat-text", text: message.text }),
    );
  }

  // --- Sending and hiding ---------------------------------------------------------

  send() {
    const input = $("#chat-text");
    if (this.waiting) return;
    const text = input.value.trim();
    input.removeAttribute("aria-invalid");
    if (!text) {
      input.focus();
      return this.say("Write a message first.", "error");
    }
    this.say("");
    const requestId = newRequestId();
    if (this.socket.live && this.socket.send({ type: "CHAT", text, request_id: requestId })) {
      return this.expectAnswer({ kind: "send", text, requestId });
    }
    this.overRest({ kind: "send", text }, async () => {
      this.add(await api.post(`/api/lots/${this.lotId}/chat/`, { text }));
      this.sent();
    });
  }

  hide(id) {
    if (this.waiting) return;
    this.say("");
    const requestId = newRequestId();
    if (this.socket.live && this.socket.send({ type: "HIDE_CHAT", id, request_id: requestId })) {
      return this.expectAnswer({ kind: "hide", id, requestId });
    }
    this.overRest({ kind: "hide", id }, async () => {
      await api.post(`/api/lots/${this.lotId}/chat/${id}/hide/`);
      this.settle();
      this.remove(id);
    });
  }

  // No answer in time: sending again over REST could post the message twice, so the person decides.
  expectAnswer(request) {
    const timeout = () => {
      this.settle();
      const text =
        request.kind === "send"
          ? "The server did not answer in time. If your message does not appear above, send it again."
          : "The server did not answer in time. Try again.";
      this.say(text, "warning");
    };
    this.waiting = { ...request, timer: setTimeout(timeout, ANSWER_TIMEOUT_MS) };
    this.busy(true);
  }

  async overRest(request, call) {
    this.waiting = { ...request, timer: null };
    this.busy(true);
    try {
      await call();
    } catch (error) {
      this.refused({ code: error.code, message: error.message });
    }
  }

  settle() {
    clearTimeout(this.waiting?.timer);
    this.waiting = null;
    this.busy(false);
  }

  sent() {
    const { text } = this.waiting;
    this.settle();
    // What the person typed meanwhile stays.
    const input = $("#chat-text");
    if (input.value.trim() === text) input.value = "";
    const list = $("#chat-list");
    list.scrollTop = list.scrollHeight;
  }

  refused(problem) {
    const hiding = this.waiting?.kind === "hide" ? this.waiting.id : null;
    this.settle();
    if (problem.code === "chat_message_not_found" && hiding !== null) this.remove(hiding);
    if (["invalid_text", "text_too_long"].includes(problem.code)) $("#chat-text").setAttribute("aria-invalid", "true");
    this.say(problemText(problem), "error");
  }

  busy(on) {
    $("#chat-send").setAttribute("aria-disabled", String(on));
  }

  say(text, kind = "info") {
    setText("#chat-status", text).dataset.kind = kind;
  }
}
