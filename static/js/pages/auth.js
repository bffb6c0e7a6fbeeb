// The log-in and registration forms.
import { logIn, register } from "../api.js";
import { $, fieldError, formMessage, initPage, setBusy, showFieldErrors } from "../ui.js";

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

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  if (!username || !password) return formMessage(form, "Enter your username and password.");
  setBusy(form, true);
  try {
    await logIn(username, password);
    location.assign(nextUrl());
  } catch (error) {
    formMessage(form, LOGIN_ERRORS[error.code] ?? error.message);
    form.elements.password.value = "";
    form.elements.password.focus();
    setBusy(form, false);
  }
}

async function onRegister(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const fields = Object.fromEntries(REGISTER_FIELDS.map((name) => [name, form.elements[name].value]));
  for (const name of ["username", "email", "first_name", "last_name"]) fields[name] = fields[name].trim();
  REGISTER_FIELDS.forEach((name) => fieldError(form, name, ""));
  formMessage(form, "");
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
    const invalid = showFieldErrors(form, error, REGISTER_FIELDS);
    formMessage(form, invalid.length ? "Please correct the fields marked below." : error.message);
    setBusy(form, false);
  }
}

// Handlers first: a form sent before the session check must never fall back to a plain submit.
$("#login-form")?.addEventListener("submit", onLogin);
$("#register-form")?.addEventListener("submit", onRegister);
initPage().then((user) => user && location.replace(nextUrl()));
