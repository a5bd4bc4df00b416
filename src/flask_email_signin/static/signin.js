// Sign-in page: email -> emailed code -> signed-in view. Uses the cookie tokens;
// unsafe requests echo the CSRF cookie in X-CSRF-TOKEN (flask-jwt-extended's double submit).
"use strict";

(() => {
  const body = document.body;
  const CODE_LENGTH = Number(body.dataset.codeLength) || 6;
  const CSRF_ACCESS = body.dataset.csrfAccessCookie || "csrf_access_token";
  const CSRF_REFRESH = body.dataset.csrfRefreshCookie || "csrf_refresh_token";
  // Where the API is mounted (the page's own prefix): every call below is relative to it.
  const API = body.dataset.apiBase || "/auth";
  // Survives a reload while the person fetches the code from their mailbox.
  const PENDING_KEY = "passwordless.pending";

  const $ = (id) => document.getElementById(id);
  const steps = { email: $("step-email"), code: $("step-code"), done: $("step-done") };
  const emailForm = $("email-form");
  const emailInput = $("email");
  const emailError = $("email-error");
  const emailStatus = $("email-status");
  const codeForm = $("code-form");
  const codeInput = $("code");
  const codeError = $("code-error");
  const codeHint = $("code-hint");
  const resendButton = $("resend");
  const signOutButton = $("sign-out");
  const doneError = $("done-error");

  let pendingEmail = "";
  let resendAt = 0;
  let countdownTimer = 0;
  let verifying = false;

  // ---- HTTP -------------------------------------------------------------------------------

  function readCookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  async function call(method, path, { json, csrf } = {}) {
    const headers = { Accept: "application/json" };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    if (csrf) {
      const token = readCookie(csrf);
      if (token) headers["X-CSRF-TOKEN"] = token;
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        credentials: "same-origin",
        body: json === undefined ? undefined : JSON.stringify(json),
      });
    } catch (networkError) {
      return { status: 0, body: null, headers: new Headers() };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (notJson) {
      data = null;
    }
    return { status: response.status, body: data, headers: response.headers };
  }

  const errorCode = (result) => (result.body && result.body.error ? result.body.error.code : "");
  const errorMessage = (result) =>
    result.body && result.body.error && result.body.error.message
      ? result.body.error.message
      : "Something went wrong. Please try again.";
  const retryAfter = (result) => Math.max(1, parseInt(result.headers.get("Retry-After") || "0", 10) || 0);

  // A cookie-authenticated request; an expired access token is refreshed once. The access
  // cookie expires with its token, so "expired" often reads as "missing": the refresh
  // cookie's CSRF twin, readable here, tells whether a session may still be refreshed.
  async function authed(method, path) {
    const csrf = method === "GET" ? undefined : CSRF_ACCESS;
    let result = await call(method, path, { csrf });
    const code = result.status === 401 ? errorCode(result) : "";
    if (code === "token_expired" || (code === "token_missing" && readCookie(CSRF_REFRESH))) {
      const refreshed = await call("POST", `${API}/refresh`, { csrf: CSRF_REFRESH });
      if (refreshed.status === 200) result = await call(method, path, { csrf });
    }
    return result;
  }

  // ---- View helpers -----------------------------------------------------------------------

  function show(name, focus) {
    $("loading").hidden = true;
    for (const [key, section] of Object.entries(steps)) section.hidden = key !== name;
    if (focus) focus.focus();
  }

  function setText(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  function setFieldError(element, input, text) {
    setText(element, text);
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }

  function setBusy(button, busy, busyLabel) {
    if (busy) {
      button.dataset.label = button.textContent;
      button.textContent = busyLabel;
      button.classList.add("busy");
      button.disabled = true;
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      button.classList.remove("busy");
      button.disabled = false;
    }
  }

  function inWords(seconds) {
    if (seconds < 60) return `${seconds} second${seconds === 1 ? "" : "s"}`;
    const minutes = Math.ceil(seconds / 60);
    return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  }

  function clock(seconds) {
    const m = Math.floor(seconds / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return `${m}:${s}`;
  }

  const genericFailure = (result) =>
    result.status === 0
      ? "We could not reach the server. Check your connection and try again."
      : result.status >= 500
        ? "The service is briefly unavailable. Please try again in a moment."
        : errorMessage(result);

  // ---- Pending sign-in (survives reloads) ---------------------------------------------------

  function savePending() {
    try {
      sessionStorage.setItem(PENDING_KEY, JSON.stringify({ email: pendingEmail, resendAt }));
    } catch (storageOff) {
      /* private mode: the page still works, it just forgets on reload */
    }
  }

  function loadPending() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
      return saved && typeof saved.email === "string" ? saved : null;
    } catch (storageOff) {
      return null;
    }
  }

  function clearPending() {
    try {
      sessionStorage.removeItem(PENDING_KEY);
    } catch (storageOff) {
      /* nothing to clear */
    }
  }

  // ---- Resend cooldown ----------------------------------------------------------------------

  function startCooldown(seconds) {
    resendAt = Date.now() + seconds * 1000;
    savePending();
    tick();
  }

  function tick() {
    window.clearTimeout(countdownTimer);
    const left = Math.ceil((resendAt - Date.now()) / 1000);
    if (left > 0) {
      resendButton.disabled = true;
      resendButton.textContent = `Resend code in ${clock(left)}`;
      countdownTimer = window.setTimeout(tick, 1000);
    } else {
      resendButton.disabled = false;
      resendButton.textContent = "Resend code";
    }
  }

  // ---- Step 1: email ------------------------------------------------------------------------

  function showEmailStep(notice) {
    window.clearTimeout(countdownTimer);
    setText(emailStatus, notice || "");
    setFieldError(emailError, emailInput, "");
    show("email", emailInput);
  }

  function showCodeStep(email, notice) {
    pendingEmail = email;
    $("code-email").textContent = email;
    codeInput.value = "";
    setFieldError(codeError, codeInput, "");
    if (notice) codeHint.textContent = notice;
    savePending();
    tick();
    show("code", codeInput);
  }

  async function requestCode(email) {
    return call("POST", `${API}/request-otp`, { json: { email } });
  }

  emailForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = emailInput.value.trim();
    setText(emailStatus, "");
    if (!email || !emailInput.checkValidity()) {
      setFieldError(emailError, emailInput, "Enter your email address, like name@example.com.");
      emailInput.focus();
      return;
    }
    const button = emailForm.querySelector("button[type=submit]");
    setBusy(button, true, "Sending code");
    const result = await requestCode(email);
    setBusy(button, false);

    if (result.status === 202) {
      const minutes = Math.round(result.body.expires_in / 60);
      startCooldown(result.body.resend_in);
      showCodeStep(email, `The code works once, for ${minutes} minute${minutes === 1 ? "" : "s"}.`);
      return;
    }
    const code = errorCode(result);
    if (code === "resend_cooldown") {
      // A code went out moments ago and may still work: go and enter it.
      startCooldown(retryAfter(result));
      showCodeStep(email, "A code was sent to this address moments ago. Enter it, or ask for a new one when the timer runs out.");
      return;
    }
    let message = genericFailure(result);
    if (code === "validation_failed") {
      message = "That does not look like an email address. Check it and try again.";
    } else if (code === "too_many_codes") {
      message = `Too many codes were sent to this address. Try again in ${inWords(retryAfter(result))}.`;
    } else if (result.status === 429) {
      message = `Too many attempts. Try again in ${inWords(retryAfter(result))}.`;
    }
    setFieldError(emailError, emailInput, message);
    emailInput.focus();
  });

  // ---- Step 2: code -------------------------------------------------------------------------

  // Digits only, whatever was typed or pasted ("123 456", "Code: 123456").
  codeInput.addEventListener("input", () => {
    const digits = codeInput.value.replace(/\D/g, "").slice(0, CODE_LENGTH);
    if (digits !== codeInput.value) codeInput.value = digits;
    if (codeError.textContent) setFieldError(codeError, codeInput, "");
    if (digits.length === CODE_LENGTH) codeForm.requestSubmit();
  });

  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (verifying) return;
    const otp = codeInput.value;
    if (otp.length !== CODE_LENGTH) {
      setFieldError(codeError, codeInput, `Enter the ${CODE_LENGTH}-digit code from the email.`);
      codeInput.focus();
      return;
    }
    verifying = true;
    const button = codeForm.querySelector("button[type=submit]");
    setBusy(button, true, "Signing in");
    const result = await call("POST", `${API}/verify-otp`, { json: { email: pendingEmail, otp } });
    setBusy(button, false);
    verifying = false;

    if (result.status === 200) {
      clearPending();
      await showSignedIn();
      return;
    }
    const code = errorCode(result);
    let message = genericFailure(result);
    if (code === "otp_invalid") {
      const left = result.body.error.details ? result.body.error.details.attempts_left : null;
      message =
        left === null || left === undefined
          ? "That code is not correct. Check the email and try again."
          : `That code is not correct. ${left} ${left === 1 ? "try" : "tries"} left.`;
    } else if (code === "otp_attempts_exceeded") {
      message = "Too many wrong tries for this code. Ask for a new one with Resend code.";
    } else if (code === "otp_expired") {
      message = "This code has expired or was already used. Ask for a new one with Resend code.";
    } else if (code === "verification_locked") {
      message = `Too many failed attempts. For your safety, sign-in for this address is paused for ${inWords(retryAfter(result))}.`;
    } else if (code === "validation_failed") {
      message = `Enter the ${CODE_LENGTH}-digit code from the email.`;
    }
    setFieldError(codeError, codeInput, message);
    codeInput.select();
    codeInput.focus();
  });

  resendButton.addEventListener("click", async () => {
    setBusy(resendButton, true, "Sending");
    const result = await requestCode(pendingEmail);
    setBusy(resendButton, false);
    if (result.status === 202) {
      startCooldown(result.body.resend_in);
      codeInput.value = "";
      setFieldError(codeError, codeInput, "");
      codeHint.textContent = "A new code is on its way. Earlier codes and links no longer work.";
      codeInput.focus();
      return;
    }
    if (result.status === 429) {
      startCooldown(retryAfter(result));
      setFieldError(
        codeError,
        codeInput,
        errorCode(result) === "resend_cooldown"
          ? "A code was sent moments ago. You can ask for another when the timer runs out."
          : `Too many codes were sent to this address. Try again in ${inWords(retryAfter(result))}.`,
      );
      return;
    }
    tick();
    setFieldError(codeError, codeInput, genericFailure(result));
  });

  $("change-email").addEventListener("click", () => {
    clearPending();
    resendAt = 0;
    emailInput.value = pendingEmail;
    showEmailStep();
    emailInput.select();
  });

  // ---- Step 3: signed in --------------------------------------------------------------------

  async function showSignedIn(profile) {
    let me = profile;
    if (!me) {
      const result = await authed("GET", `${API}/me`);
      if (result.status !== 200) {
        showEmailStep("Your session ended. Sign in again.");
        return;
      }
      me = result.body;
    }
    $("signed-in-email").textContent = me.email;
    setText(doneError, "");
    show("done", $("done-title"));
    await loadSessions();
  }

  function describeAgent(agent) {
    if (!agent) return "Unknown device";
    const browser =
      (/Edg\//.test(agent) && "Edge") ||
      (/Firefox\//.test(agent) && "Firefox") ||
      (/Chrom(e|ium)\//.test(agent) && "Chrome") ||
      (/Safari\//.test(agent) && "Safari") ||
      (/^curl\//.test(agent) && "curl") ||
      "Browser";
    const system =
      (/Windows/.test(agent) && "Windows") ||
      (/Android/.test(agent) && "Android") ||
      (/iPhone|iPad/.test(agent) && "iOS") ||
      (/Mac OS X/.test(agent) && "macOS") ||
      (/Linux/.test(agent) && "Linux") ||
      "";
    return system ? `${browser} on ${system}` : browser;
  }

  function when(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return "";
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return date.toLocaleDateString();
  }

  // The sessions list appears only where GET /auth/sessions exists.
  async function loadSessions() {
    const section = $("sessions");
    const list = $("session-list");
    const result = await authed("GET", `${API}/sessions`);
    const items = Array.isArray(result.body)
      ? result.body
      : result.body && Array.isArray(result.body.sessions)
        ? result.body.sessions
        : null;
    if (result.status !== 200 || !items) {
      section.hidden = true;
      return;
    }
    list.replaceChildren();
    for (const session of items) {
      const current = Boolean(session.current ?? session.is_current);
      const sid = session.sid ?? session.id;
      const item = document.createElement("li");
      item.className = "session";
      const text = document.createElement("div");
      const device = document.createElement("div");
      device.className = "session-device";
      device.textContent = describeAgent(session.user_agent ?? session.ua);
      if (current) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "This device";
        device.append(badge);
      }
      const meta = document.createElement("div");
      meta.className = "session-meta";
      const lastUsed = when(session.last_used_at ?? session.last_seen_at ?? session.last_used);
      const started = when(session.created_at ?? session.created);
      meta.textContent = [session.ip, lastUsed && `active ${lastUsed}`, !lastUsed && started && `signed in ${started}`]
        .filter(Boolean)
        .join(" · ");
      text.append(device, meta);
      item.append(text);
      if (!current && sid) {
        const end = document.createElement("button");
        end.type = "button";
        end.className = "button link";
        end.textContent = "Sign out";
        end.setAttribute("aria-label", `Sign out ${device.firstChild.textContent}`);
        end.addEventListener("click", async () => {
          const ended = await authed("DELETE", `${API}/sessions/${encodeURIComponent(sid)}`);
          if (ended.status >= 200 && ended.status < 300) item.remove();
          else setText(doneError, genericFailure(ended));
        });
        item.append(end);
      }
      list.append(item);
    }
    section.hidden = items.length === 0;
  }

  signOutButton.addEventListener("click", async () => {
    setBusy(signOutButton, true, "Signing out");
    const result = await authed("POST", `${API}/logout`);
    setBusy(signOutButton, false);
    // 401: the session had already ended; either way this browser is signed out.
    if (result.status === 200 || result.status === 401) {
      emailInput.value = "";
      showEmailStep("You are signed out.");
      return;
    }
    setText(doneError, genericFailure(result));
  });

  // ---- Start --------------------------------------------------------------------------------

  async function start() {
    const me = await authed("GET", `${API}/me`);
    if (me.status === 200) {
      clearPending();
      await showSignedIn(me.body);
      return;
    }
    const pending = loadPending();
    if (pending) {
      resendAt = Number(pending.resendAt) || 0;
      showCodeStep(pending.email);
      return;
    }
    showEmailStep();
  }

  start();
})();
