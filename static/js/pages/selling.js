// The seller's page: my lots with the actions their state allows, and the form that lists or edits one.
import { api, getAll } from "../api.js";
import { dateTime } from "../format.js";
import { priceText } from "../lots.js";
import { $, el, fieldError, formMessage, initPage, loginUrl, safeUrl, setBusy, showBanner, showFieldErrors } from "../ui.js";

const STATUS_TEXT = { draft: "Draft", scheduled: "Upcoming", open: "Open", closed: "Ended", cancelled: "Cancelled" };
// What a seller may do to a lot in each (effective) state; an ended lot takes nothing.
const ACTIONS = { draft: ["edit", "open", "cancel"], scheduled: ["edit", "open", "cancel"], open: ["edit", "close", "cancel"] };
const ACTION_TEXT = { edit: "Edit", open: "Open now", close: "Close now", cancel: "Cancel" };
const DONE_TEXT = { open: "is open for bidding", close: "is closed", cancel: "is cancelled" };
// Close and cancel end the lot for good: the seller says yes first.
const CONFIRMATION = {
  close: { question: (lot) => `Close “${lot.title}” now? Bidding stops and the leader wins if the reserve is met.`, yes: "Yes, close it" },
  cancel: { question: (lot) => `Cancel “${lot.title}”? It ends with no winner.`, yes: "Yes, cancel the lot" },
};
// The form's fields, named as the API names them.
const EDITABLE = [
  "title",
  "description",
  "starting_price",
  "currency",
  "bid_increment",
  "reserve_price",
  "buy_now_price",
  "starts_at",
  "ends_at",
  "soft_close_seconds",
];
const FIELDS = [...EDITABLE, "image"];
const TIMES = new Set(["starts_at", "ends_at"]);

const form = $("#lot-form");
const section = $("#my-lots-section");
let editing = null; // the lot the form edits; null: the form lists a new one
let snapshot = {}; // the form's values when editing began: only what changed is sent
let previewUrl = null;

// --- Times: datetime-local inputs hold the browser's wall-clock time -------------

const pad = (n) => String(n).padStart(2, "0");

function offsetText(minutesEast) {
  const abs = Math.abs(minutesEast);
  return `${minutesEast < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// "2026-05-01T18:30" (local) -> "2026-05-01T18:30:00+02:00": the moment the seller meant, wherever the server is.
function isoFromInput(value) {
  const moment = new Date(value);
  const wallClock = value.length === 16 ? `${value}:00` : value;
  return `${wallClock}${offsetText(-moment.getTimezoneOffset())}`;
}

function inputFromIso(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

function zoneText() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const offset = `UTC${offsetText(-new Date().getTimezoneOffset())}`;
  return zone && zone !== "UTC" ? `${zone} (${offset})` : offset;
}

// --- My lots ------------------------------------------------------------------

function showActions(cell, lot) {
  const actions = ACTIONS[lot.status] ?? [];
  const buttons = el("div", { class: "lot-actions" });
  cell.replaceChildren(buttons);
  buttons.append(
    ...actions.map((action) =>
      el("button", {
        type: "button",
        class: "button-small",
        "data-action": action,
        text: ACTION_TEXT[action],
        onclick: () => (action === "edit" ? startEditing(lot) : CONFIRMATION[action] ? confirmAction(cell, lot, action) : act(cell, lot, action)),
      }),
    ),
  );
  if (!actions.length) buttons.append(el("span", { class: "muted", text: "—" }));
}

function confirmAction(cell, lot, action) {
  const { question, yes } = CONFIRMATION[action];
  const questionId = `confirm-${lot.id}`;
  const no = el("button", { type: "button", class: "button-small", text: "No, keep it", onclick: () => showActions(cell, lot) });
  cell.replaceChildren(
    el(
      "div",
      { class: "confirm", role: "group", "aria-labelledby": questionId },
      el("p", { id: questionId, text: question(lot) }),
      el("button", { type: "button", class: "button-small primary", text: yes, onclick: () => act(cell, lot, action) }),
      no,
    ),
  );
  no.focus();
}

async function act(cell, lot, action) {
  cell.querySelectorAll("button").forEach((button) => {
    button.disabled = true;
  });
  formMessage(section, "");
  try {
    const updated = await api.post(`/api/lots/${Number(lot.id)}/${action}/`);
    showLot(updated);
    formMessage(section, `“${updated.title}” ${DONE_TEXT[action]}.`, "success");
  } catch (error) {
    showActions(cell, lot);
    formMessage(section, error.message);
  }
}

function lotRow(lot) {
  const actions = el("td", { "data-label": "Actions" });
  showActions(actions, lot);
  // `data-label`: the column's name beside the value where phones stack the cells.
  return el(
    "tr",
    { "data-lot-id": lot.id },
    el("td", { class: "lot-title" }, el("a", { href: `/lots/${Number(lot.id)}/`, text: lot.title })),
    el("td", { "data-label": "Status" }, el("span", { class: "pill", "data-status": lot.status, text: STATUS_TEXT[lot.status] ?? lot.status })),
    el("td", { class: "num", "data-label": "Price", text: priceText(lot) }),
    el("td", { class: "num", "data-label": "Bids", text: String(lot.bid_count) }),
    el("td", { "data-label": "Ends" }, el("time", { datetime: lot.ends_at, text: dateTime(lot.ends_at) })),
    actions,
  );
}

// Puts the lot's row in the table: in place if it is there, else first (the list is newest first).
function showLot(lot) {
  const row = lotRow(lot);
  const existing = $(`tr[data-lot-id="${Number(lot.id)}"]`, section);
  if (existing) existing.replaceWith(row);
  else $("#my-lots tbody").prepend(row);
  showListState();
}

function showListState() {
  const count = $("#my-lots tbody").children.length;
  $("#my-lots").hidden = count === 0;
  $("#my-lots-empty").hidden = count > 0;
}

// --- The form -------------------------------------------------------------------

function clearErrors() {
  FIELDS.forEach((name) => fieldError(form, name, ""));
  formMessage(form, "");
}

// Shows `url` under the file input; an object URL (a chosen file) is released when replaced.
function showPreview(url, { chosen = false } = {}) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = chosen ? url : null;
  const preview = $("#image-preview");
  preview.hidden = !url;
  if (url) preview.src = url;
  else preview.removeAttribute("src");
}

function onImageChosen() {
  fieldError(form, "image", "");
  const file = form.elements.image.files[0];
  if (!file) return showPreview(editing?.image ? safeUrl(editing.image) : null);
  showPreview(URL.createObjectURL(file), { chosen: true });
}

function rawValues() {
  return Object.fromEntries(EDITABLE.map((name) => [name, form.elements[name].value]));
}

function startEditing(lot) {
  stopEditing();
  editing = lot;
  const values = {
    ...Object.fromEntries(EDITABLE.map((name) => [name, lot[name] ?? ""])),
    starts_at: inputFromIso(lot.starts_at),
    ends_at: inputFromIso(lot.ends_at),
  };
  EDITABLE.forEach((name) => {
    form.elements[name].value = values[name];
  });
  snapshot = rawValues();
  $("#lot-form-heading").textContent = `Edit “${lot.title}”`;
  $("#lot-submit").textContent = "Save changes";
  $("#stop-editing").hidden = false;
  $("#draft-field").hidden = $("#draft-hint").hidden = $("#starts_at-hint").hidden = true;
  showPreview(lot.image ? safeUrl(lot.image) : null);
  form.scrollIntoView({ block: "start" });
  form.elements.title.focus();
}

function stopEditing() {
  editing = null;
  snapshot = {};
  form.reset();
  clearErrors();
  showPreview(null);
  $("#lot-form-heading").textContent = "List a lot";
  $("#lot-submit").textContent = "List lot";
  $("#stop-editing").hidden = true;
  $("#draft-field").hidden = $("#draft-hint").hidden = $("#starts_at-hint").hidden = false;
}

// The value the API takes for a field: times with their offset, amounts and the title trimmed.
function apiValue(name, raw) {
  if (TIMES.has(name)) return raw ? isoFromInput(raw) : "";
  return name === "description" ? raw : raw.trim();
}

// The fields to send, or null after marking what is missing. An edit sends only what changed
// (a lot with bids refuses any price in a PATCH, even an unchanged one).
function formData() {
  const raw = rawValues();
  const body = new FormData();
  const names = editing ? EDITABLE.filter((name) => raw[name] !== snapshot[name]) : EDITABLE.filter((name) => raw[name].trim());
  // An empty multipart time would be read as "unchanged": say so rather than ignore it.
  const emptied = editing ? names.filter((name) => TIMES.has(name) && !raw[name]) : [];
  emptied.forEach((name) => fieldError(form, name, "Enter a time."));
  if (emptied.length) {
    form.elements[emptied[0]].focus();
    return null;
  }
  names.forEach((name) => body.append(name, apiValue(name, raw[name])));
  const image = form.elements.image.files[0];
  if (image) body.append("image", image);
  if (!editing) body.append("draft", form.elements.draft.checked ? "true" : "false");
  return body;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  const body = formData();
  if (!body) return;
  if (editing && ![...body.keys()].length) return formMessage(form, "Nothing has changed.", "warning");
  setBusy(form, true);
  try {
    const lot = editing ? await api.patch(`/api/lots/${Number(editing.id)}/`, body) : await api.post("/api/lots/", body);
    const verb = editing ? "saved" : lot.status === "draft" ? "saved as a draft" : "listed";
    showLot(lot);
    stopEditing();
    formMessage(form, `“${lot.title}” is ${verb}.`, "success");
  } catch (error) {
    const invalid = showFieldErrors(form, error, FIELDS);
    formMessage(form, invalid.length ? "Please correct the fields marked above." : error.message);
  }
  setBusy(form, false);
}

// The currencies the API takes, the server's default chosen.
async function loadCurrencies() {
  const { currency } = (await api.options("/api/lots/")).actions.POST;
  $("#currency").replaceChildren(
    ...currency.choices.map(({ value, display_name: name }) =>
      el("option", { value, selected: value === currency.default, text: name }),
    ),
  );
}

async function main() {
  const user = await initPage();
  if (!user) return location.replace(loginUrl());
  try {
    const [lots] = await Promise.all([
      getAll(`/api/lots/?seller=${encodeURIComponent(user.username)}&ordering=-created_at`),
      loadCurrencies(),
    ]);
    $("#my-lots tbody").replaceChildren(...lots.map(lotRow));
    showListState();
  } catch (error) {
    showBanner(error.message);
  }
  $("#my-lots-loading").hidden = true;
}

$("[data-time-zone]").textContent = zoneText();
// Handlers first: a form sent before the session check must never fall back to a plain submit.
form.addEventListener("submit", onSubmit);
form.elements.image.addEventListener("change", onImageChosen);
$("#stop-editing").addEventListener("click", stopEditing);
for (const link of document.querySelectorAll("[data-new-lot]")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    if (editing) stopEditing();
    form.scrollIntoView({ block: "start" });
    form.elements.title.focus();
  });
}
main();
