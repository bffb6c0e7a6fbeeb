// The log-in and registration forms.
import { logIn, register } from "../api.js";
import { $, initPage } from "../ui.js";

const LOGIN_ERRORS = {
  no_active_account: "Wrong username or password.",
  throttled: "Too many attempts. Wait a minute and try again.",
};
const REGISTER_FIELDS = ["username", "email", "first_name", "last_name", "password", "password_confirm"];

// Only a path on this site: never an open redirect.
function nextUrl() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return /^\/(?![/\\])/.test(next) ? next : "/";
}

function showError(text) {
  const error = $("#form-error");
  error.textContent = text;
  error.hidden = !text;
}

function setBusy(form, busy) {
  form.querySelector("button[type=submit]").disabled = busy;
  form.setAttribute("aria-busy", String(busy));
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  if (!username || !password) return showError("Enter your username and password.");
  setBusy(form, true);
  try {
    await logIn(username, password);
    location.assign(nextUrl());
  } catch (error) {
    showError(LOGIN_ERRORS[error.code] ?? error.message);
    form.elements.password.value = "";
    form.elements.password.focus();
    setBusy(form, false);
  }
}

function fieldError(form, name, text) {
  document.getElementById(`${name}-error`).textContent = text;
  if (text) form.elements[name].setAttribute("aria-invalid", "true");
  else form.elements[name].removeAttribute("aria-invalid");
}

async function onRegister(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const fields = Object.fromEntries(REGISTER_FIELDS.map((name) => [name, form.elements[name].value]));
  for (const name of ["username", "email", "first_name", "last_name"]) fields[name] = fields[name].trim();
  REGISTER_FIELDS.forEach((name) => fieldError(form, name, ""));
  showError("");
  if (fields.password !== fields.password_confirm) {
    fieldError(form, "password_confirm", "The two passwords do not match.");
    return form.elements.password_confirm.focus();
  }
  setBusy(form, true);
  try {
    await register(fields);
    await logIn(fields.username, fields.password);
    location.assign(nextUrl());
  } catch (error) {
    const invalid = REGISTER_FIELDS.filter((name) => error.body.errors?.[name]);
    invalid.forEach((name) => fieldError(form, name, [].concat(error.body.errors[name]).join(" ")));
    showError(invalid.length ? "Please correct the fields marked below." : error.message);
    if (invalid.length) form.elements[invalid[0]].focus();
    setBusy(form, false);
  }
}

// Handlers first: a form sent before the session check must never fall back to a plain submit.
$("#login-form")?.addEventListener("submit", onLogin);
$("#register-form")?.addEventListener("submit", onRegister);
initPage().then((user) => user && location.replace(nextUrl()));
