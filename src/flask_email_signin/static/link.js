// Link pages: the secret is in the URL fragment, which browsers never send to the
// server; copy it into the form so the button can POST it. In the browser that asked
// for the link (the server saw its binding cookie), the form is sent at once.
"use strict";

(() => {
  // Times are sent in UTC; shown in this device's own time zone and language.
  for (const time of document.querySelectorAll("time[datetime]")) {
    const at = new Date(time.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      time.textContent = at.toLocaleTimeString(document.documentElement.lang || undefined, {
        hour: "2-digit",
        minute: "2-digit",
      });
    }
  }

  const secret = window.location.hash.slice(1);
  const form = document.getElementById("link-form");
  const field = document.getElementById("link-secret");
  const button = document.getElementById("link-submit");
  if (/^[A-Za-z0-9_-]{43}$/.test(secret)) {
    field.value = secret;
    form.addEventListener("submit", () => {
      // Disabled after the submit event, so the pressed button's name and value still go.
      window.setTimeout(() => {
        for (const each of form.querySelectorAll("button")) each.disabled = true;
        button.textContent = button.dataset.busyLabel || button.textContent;
        button.classList.add("busy");
      });
    });
    if (document.body.dataset.automatic === "true") form.requestSubmit(button);
    return;
  }
  document.getElementById("link-error").hidden = false;
  for (const each of form.querySelectorAll("button")) each.disabled = true;
})();
