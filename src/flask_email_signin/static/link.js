// Link confirmation page: the secret is in the URL fragment, which browsers never
// send to the server; copy it into the form so the button can POST it.
"use strict";

(() => {
  const secret = window.location.hash.slice(1);
  const field = document.getElementById("link-secret");
  const button = document.getElementById("link-submit");
  if (/^[A-Za-z0-9_-]{43}$/.test(secret)) {
    field.value = secret;
    document.getElementById("link-form").addEventListener("submit", () => {
      button.disabled = true;
      button.textContent = "Signing in";
      button.classList.add("busy");
    });
    return;
  }
  document.getElementById("link-error").hidden = false;
  button.disabled = true;
})();
