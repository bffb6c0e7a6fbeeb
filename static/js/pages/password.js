// Forgotten passwords: asking for a reset link, and the page that link opens.
import { api } from "../api.js";
import { $, fieldError, formMessage, initPage, newPasswordsMatch, setBusy, showFieldErrors } from "../ui.js";

const RESET_FIELDS = ["new_password", "new_password_confirm"];
const BAD_LINK = "This link is invalid, has expired or was used already: ask for a new one below.";

function showDone(form, section) {
  form.hidden = true;
  section.hidden = false;
  $("h1", section).focus();
}

async function onForgot(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const email = form.elements.email.value.trim();
  fieldError(form, "email", "");
  formMessage(form, "");
  if (!email) {
    fieldError(form, "email", "Enter your e-mail address.");
    return form.elements.email.focus();
  }
  setBusy(form, true);
  try {
    // The answer is the same whether or not the address has an account.
    await api.post("/api/auth/password-reset/", { email });
    $("#sent-email").textContent = email;
    showDone(form, $("#forgot-sent"));
  } catch (error) {
    if (!showFieldErrors(form, error, ["email"]).length) formMessage(form, error.message);
    setBusy(form, false);
  }
}

// The link in the e-mail carries the account (`uid`) and its one-time `token`.
function resetLink() {
  const params = new URLSearchParams(location.search);
  return { uid: params.get("uid") || "", token: params.get("token") || "" };
}

async function onReset(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const fields = Object.fromEntries(RESET_FIELDS.map((name) => [name, form.elements[name].value]));
  RESET_FIELDS.forEach((name) => fieldError(form, name, ""));
  formMessage(form, "");
  if (!newPasswordsMatch(form)) return;
  setBusy(form, true);
  try {
    await api.post("/api/auth/password-reset/confirm/", { ...resetLink(), ...fields });
    showDone(form, $("#reset-done"));
  } catch (error) {
    const badLink = error.code === "invalid_reset_token" || error.body.errors?.uid || error.body.errors?.token;
    if (!showFieldErrors(form, error, RESET_FIELDS).length) formMessage(form, badLink ? BAD_LINK : error.message);
    setBusy(form, false);
  }
}

$("#forgot-form")?.addEventListener("submit", onForgot);
const resetForm = $("#reset-form");
if (resetForm) {
  resetForm.addEventListener("submit", onReset);
  const { uid, token } = resetLink();
  if (!uid || !token) formMessage(resetForm, BAD_LINK);
}
initPage();
