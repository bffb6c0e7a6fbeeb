// Account settings: e-mail notifications, the e-mail address, the password.
import { api } from "../api.js";
import { $, fieldError, formMessage, initPage, loginUrl, newPasswordsMatch, setBusy, showFieldErrors } from "../ui.js";

const PASSWORD_FIELDS = ["current_password", "new_password", "new_password_confirm"];
// Refusals that are about one field without naming it.
const FIELD_OF_CODE = { wrong_password: "current_password" };

async function onNotificationsChange(event) {
  const checkbox = event.currentTarget;
  const form = checkbox.form;
  checkbox.disabled = true;
  try {
    const user = await api.patch("/api/users/me/", { email_notifications: checkbox.checked });
    checkbox.checked = user.email_notifications;
    formMessage(form, user.email_notifications ? "Saved: we'll e-mail you." : "Saved: no more e-mails.", "success");
  } catch (error) {
    checkbox.checked = !checkbox.checked;
    formMessage(form, error.message);
  }
  checkbox.disabled = false;
}

async function onEmail(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const email = form.elements.email.value.trim();
  const password = form.elements.current_password.value;
  for (const name of ["email", "current_password"]) fieldError(form, name, "");
  formMessage(form, "");
  if (!email) {
    fieldError(form, "email", "Enter your e-mail address.");
    return form.elements.email.focus();
  }
  if (!password) {
    fieldError(form, "current_password", "Enter your current password.");
    return form.elements.current_password.focus();
  }
  setBusy(form, true);
  try {
    const user = await api.patch("/api/users/me/", { email, current_password: password });
    form.elements.email.value = user.email;
    form.elements.current_password.value = "";
    formMessage(form, `Your e-mail address is now ${user.email}.`, "success");
  } catch (error) {
    if (!showFieldErrors(form, error, ["email", "current_password"]).length) formMessage(form, error.message);
  }
  setBusy(form, false);
}

async function onPassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const fields = Object.fromEntries(PASSWORD_FIELDS.map((name) => [name, form.elements[name].value]));
  PASSWORD_FIELDS.forEach((name) => fieldError(form, name, ""));
  formMessage(form, "");
  if (!newPasswordsMatch(form)) return;
  setBusy(form, true);
  try {
    // The answer brings this page new session cookies: only the other devices are logged out.
    await api.post("/api/users/me/password/", fields);
    PASSWORD_FIELDS.forEach((name) => {
      form.elements[name].value = "";
    });
    formMessage(form, "Your password has been changed. Your other devices have been logged out.", "success");
  } catch (error) {
    const field = FIELD_OF_CODE[error.code];
    if (field) {
      fieldError(form, field, error.message);
      form.elements[field].focus();
    } else if (!showFieldErrors(form, error, PASSWORD_FIELDS).length) {
      formMessage(form, error.message);
    }
  }
  setBusy(form, false);
}

async function main() {
  const user = await initPage();
  if (!user) return location.replace(loginUrl());
  const notifications = $("#email_notifications");
  notifications.checked = user.email_notifications;
  notifications.disabled = false;
  notifications.addEventListener("change", onNotificationsChange);
  $("#email-form").elements.email.value = user.email;
  // For password managers: whose password this is.
  $("[data-username-field]").value = user.username;
}

// Handlers first: a form sent before the session check must never fall back to a plain submit.
$("#email-form").addEventListener("submit", onEmail);
$("#password-form").addEventListener("submit", onPassword);
main();
