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
  // This page's language: its messages (rendered by the server), numbers and durations.
  const LANG = document.documentElement.lang || "en";
  const MESSAGES = (() => {
    try {
      return JSON.parse($("page-messages").textContent);
    } catch (missing) {
      return {};
    }
  })();
  // A message in this page's language, its {placeholders} filled in.
  const t = (message, values = {}) =>
    (MESSAGES[message] || message).replace(/\{(\w+)\}/g, (whole, name) =>
      name in values ? String(values[name]) : whole,
    );
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
  let approvalNumber = "";
  let approvalTimer = 0;
  const APPROVAL_POLL_MS = 1500;

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
      : t("Something went wrong. Please try again.");
  const retryAfter = (result) => Math.max(1, parseInt(result.headers.get("Retry-After") || "0", 10) || 0);

  // A cookie-authenticated request; an expired access token is refreshed once. The access
  // cookie expires with its token, so "expired" often reads as "missing": the refresh
  // cookie's CSRF twin, readable here, tells whether a session may still be refreshed.
  // One refresh at a time: refresh tokens rotate, and a second request presenting the
  // token the first one just retired would end the session (reuse detection). Requests
  // that find their token expired together share the one refresh.
  let refreshing = null;
  function refreshOnce() {
    if (!refreshing) {
      refreshing = call("POST", `${API}/refresh`, { csrf: CSRF_REFRESH }).finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  async function authed(method, path, { json } = {}) {
    const csrf = method === "GET" ? undefined : CSRF_ACCESS;
    let result = await call(method, path, { csrf, json });
    const code = result.status === 401 ? errorCode(result) : "";
    if (code === "token_expired" || (code === "token_missing" && readCookie(CSRF_REFRESH))) {
      const refreshed = await refreshOnce();
      if (refreshed.status === 200) result = await call(method, path, { csrf, json });
    }
    return result;
  }

  // ---- View helpers -----------------------------------------------------------------------

  function show(name, focus) {
    $("loading").hidden = true;
    for (const [key, section] of Object.entries(steps)) section.hidden = key !== name;
    if (focus) focus.focus();
    // passkeys.js (when loaded) offers passkeys on the email step and lists them once signed in.
    document.dispatchEvent(new CustomEvent("email-signin:step", { detail: { step: name } }));
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

  // "5 minutes", "5 Minuten", "٥ دقائق": the browser knows each language's plural rules.
  function inWords(seconds) {
    const [value, unit] = seconds < 60 ? [seconds, "second"] : [Math.ceil(seconds / 60), "minute"];
    try {
      return new Intl.NumberFormat(LANG, { style: "unit", unit, unitDisplay: "long" }).format(value);
    } catch (noIntl) {
      return `${value} ${unit}${value === 1 ? "" : "s"}`;
    }
  }

  function clock(seconds) {
    const m = Math.floor(seconds / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return `${m}:${s}`;
  }

  const genericFailure = (result) =>
    result.status === 0
      ? t("We could not reach the server. Check your connection and try again.")
      : result.status >= 500
        ? t("The service is briefly unavailable. Please try again in a moment.")
        : errorMessage(result);

  // ---- Pending sign-in (survives reloads) ---------------------------------------------------

  function savePending() {
    try {
      sessionStorage.setItem(
        PENDING_KEY,
        JSON.stringify({ email: pendingEmail, resendAt, approvalNumber }),
      );
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
      resendButton.textContent = t("Resend code in {time}", { time: clock(left) });
      countdownTimer = window.setTimeout(tick, 1000);
    } else {
      resendButton.disabled = false;
      resendButton.textContent = t("Resend code");
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
    // Bound to this browser: the emailed link signs in here, and asks anywhere else.
    return call("POST", `${API}/request-otp`, { json: { email, bind_browser: true } });
  }

  emailForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = emailInput.value.trim();
    setText(emailStatus, "");
    if (!email || !emailInput.checkValidity()) {
      setFieldError(emailError, emailInput, t("Enter your email address, like name@example.com."));
      emailInput.focus();
      return;
    }
    const button = emailForm.querySelector("button[type=submit]");
    setBusy(button, true, t("Sending code"));
    const result = await requestCode(email);
    setBusy(button, false);

    if (result.status === 202) {
      startCooldown(result.body.resend_in);
      showCodeStep(email, t("The code works once, for {duration}.", { duration: inWords(result.body.expires_in) }));
      startApproval(result.body.approval_number);
      return;
    }
    const code = errorCode(result);
    if (code === "resend_cooldown") {
      // A code went out moments ago and may still work: go and enter it.
      startCooldown(retryAfter(result));
      showCodeStep(email, t("A code was sent to this address moments ago. Enter it, or ask for a new one when the timer runs out."));
      return;
    }
    let message = genericFailure(result);
    if (code === "validation_failed") {
      message = t("That does not look like an email address. Check it and try again.");
    } else if (code === "too_many_codes") {
      message = t("Too many codes were sent to this address. Try again in {duration}.", { duration: inWords(retryAfter(result)) });
    } else if (result.status === 429) {
      message = t("Too many attempts. Try again in {duration}.", { duration: inWords(retryAfter(result)) });
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
      setFieldError(codeError, codeInput, t("Enter the {length}-digit code from the email.", { length: CODE_LENGTH }));
      codeInput.focus();
      return;
    }
    verifying = true;
    const button = codeForm.querySelector("button[type=submit]");
    setBusy(button, true, t("Signing in"));
    const result = await call("POST", `${API}/verify-otp`, { json: { email: pendingEmail, otp } });
    setBusy(button, false);
    verifying = false;

    if (result.status === 200) {
      stopApproval();
      clearPending();
      await showSignedIn();
      return;
    }
    const code = errorCode(result);
    // otp_invalid and otp_superseded: the server's message says how many tries are left.
    let message = genericFailure(result);
    if (code === "otp_attempts_exceeded") {
      message = t("Too many wrong tries for this code. Ask for a new one with Resend code.");
    } else if (code === "otp_expired") {
      message = t("This code has expired. Ask for a new one with Resend code.");
    } else if (code === "otp_used") {
      message = t("This code was already used. Ask for a new one with Resend code.");
    } else if (code === "verification_locked") {
      message = t("Too many failed attempts. For your safety, sign-in for this address is paused for {duration}.", { duration: inWords(retryAfter(result)) });
    } else if (code === "validation_failed") {
      message = t("Enter the {length}-digit code from the email.", { length: CODE_LENGTH });
    }
    setFieldError(codeError, codeInput, message);
    codeInput.select();
    codeInput.focus();
  });

  resendButton.addEventListener("click", async () => {
    setBusy(resendButton, true, t("Sending"));
    const result = await requestCode(pendingEmail);
    setBusy(resendButton, false);
    if (result.status === 202) {
      startCooldown(result.body.resend_in);
      codeInput.value = "";
      setFieldError(codeError, codeInput, "");
      codeHint.textContent = t("A new code is on its way. Earlier codes and links no longer work.");
      startApproval(result.body.approval_number);
      codeInput.focus();
      return;
    }
    if (result.status === 429) {
      startCooldown(retryAfter(result));
      setFieldError(
        codeError,
        codeInput,
        errorCode(result) === "resend_cooldown"
          ? t("A code was sent moments ago. You can ask for another when the timer runs out.")
          : t("Too many codes were sent to this address. Try again in {duration}.", { duration: inWords(retryAfter(result)) }),
      );
      return;
    }
    tick();
    setFieldError(codeError, codeInput, genericFailure(result));
  });

  $("change-email").addEventListener("click", () => {
    stopApproval();
    clearPending();
    resendAt = 0;
    emailInput.value = pendingEmail;
    showEmailStep();
    emailInput.select();
  });

  // ---- Approval on another device -----------------------------------------------------------
  // A link opened in another browser asks there for the number shown here; once approved,
  // this page (which holds the browser binding cookie) is signed in by its next poll.

  function startApproval(number) {
    stopApproval();
    approvalNumber = typeof number === "string" ? number : "";
    savePending();
    if (!approvalNumber) return;
    $("approval-number").textContent = approvalNumber;
    $("approval-number").hidden = false;
    setText($("approval-status"), "");
    $("approval").hidden = false;
    approvalTimer = window.setTimeout(pollApproval, APPROVAL_POLL_MS);
  }

  function stopApproval(notice) {
    window.clearTimeout(approvalTimer);
    approvalTimer = 0;
    approvalNumber = "";
    if (notice) {
      $("approval-number").hidden = true;
      setText($("approval-status"), notice);
    } else {
      $("approval").hidden = true;
    }
  }

  async function pollApproval() {
    const number = approvalNumber;
    if (!number || steps.code.hidden) return;
    const result = await call("POST", `${API}/link-approval`, { json: { email: pendingEmail } });
    if (approvalNumber !== number) return; // stopped, or a new code, meanwhile
    if (result.status === 200) {
      stopApproval();
      clearPending();
      await showSignedIn();
      return;
    }
    const code = errorCode(result);
    if (result.status === 202 || result.status === 0 || result.status >= 500 || result.status === 429) {
      const wait = result.status === 429 ? retryAfter(result) * 1000 : APPROVAL_POLL_MS;
      approvalTimer = window.setTimeout(pollApproval, wait);
      return;
    }
    if (code === "signin_denied") {
      stopApproval(t("The sign-in was denied on the other device. Ask for a new code to try again."));
      savePending();
      return;
    }
    if (code === "link_used") {
      // This browser may have used the link in another tab: it shares the cookies.
      const me = await authed("GET", `${API}/me`);
      if (me.status === 200) {
        stopApproval();
        clearPending();
        await showSignedIn(me.body);
        return;
      }
    }
    stopApproval(); // expired, used elsewhere, or replaced: the code box says the rest
    savePending();
  }

  // ---- Step 3: signed in --------------------------------------------------------------------

  async function showSignedIn(profile) {
    let me = profile;
    if (!me) {
      const result = await authed("GET", `${API}/me`);
      if (result.status !== 200) {
        showEmailStep(t("Your session ended. Sign in again."));
        return;
      }
      me = result.body;
    }
    $("signed-in-email").textContent = me.email;
    setText(doneError, "");
    show("done", $("done-title"));
    document.dispatchEvent(new CustomEvent("email-signin:signed-in", { detail: { profile: me } }));
    await loadSessions();
    await loadActivity();
  }

  function describeAgent(agent) {
    if (!agent) return t("Unknown device");
    const browser =
      (/Edg\//.test(agent) && "Edge") ||
      (/Firefox\//.test(agent) && "Firefox") ||
      (/Chrom(e|ium)\//.test(agent) && "Chrome") ||
      (/Safari\//.test(agent) && "Safari") ||
      (/^curl\//.test(agent) && "curl") ||
      t("Browser");
    const system =
      (/Windows/.test(agent) && "Windows") ||
      (/Android/.test(agent) && "Android") ||
      (/iPhone|iPad/.test(agent) && "iOS") ||
      (/Mac OS X/.test(agent) && "macOS") ||
      (/Linux/.test(agent) && "Linux") ||
      "";
    return system ? t("{browser} on {system}", { browser, system }) : browser;
  }

  // How each session began, as the sessions list says it.
  const METHODS = {
    passkey: "with a passkey",
    code: "with an email code",
    link: "with an email link",
    approval: "approved on another device",
  };

  function when(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return "";
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 60) return t("just now");
    try {
      const relative = new Intl.RelativeTimeFormat(LANG, { numeric: "auto" });
      if (seconds < 3600) return relative.format(-Math.floor(seconds / 60), "minute");
      if (seconds < 86400) return relative.format(-Math.floor(seconds / 3600), "hour");
    } catch (noIntl) {
      /* fall through to the date */
    }
    return date.toLocaleDateString(LANG);
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
        badge.textContent = t("This device");
        device.append(badge);
      }
      const meta = document.createElement("div");
      meta.className = "session-meta";
      const lastUsed = when(session.last_used_at ?? session.last_seen_at ?? session.last_used);
      const started = when(session.created_at ?? session.created);
      meta.textContent = [
        session.ip,
        METHODS[session.method] ? t(METHODS[session.method]) : "",
        lastUsed && t("active {when}", { when: lastUsed }),
        !lastUsed && started && t("signed in {when}", { when: started }),
      ]
        .filter(Boolean)
        .join(" · ");
      text.append(device, meta);
      item.append(text);
      if (!current && sid) {
        const end = document.createElement("button");
        end.type = "button";
        end.className = "button link";
        end.textContent = t("Sign out");
        end.setAttribute("aria-label", t("Sign out {device}", { device: device.firstChild.textContent }));
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

  // What each audit event is called in the activity list.
  const ACTIVITY = {
    "session.started": "Signed in",
    "session.ended": "Signed out",
    "code.wrong": "Wrong code entered",
    "code.locked": "Sign-in paused after too many wrong codes",
    "link.used": "Email link used",
    "email.changed": "Address changed",
    "email.change_undone": "Address change undone",
    "passkey.registered": "Passkey added",
    "passkey.deleted": "Passkey removed",
  };

  // Recent sign-in activity; the section appears only where GET /auth/me/activity exists.
  async function loadActivity() {
    const section = $("activity");
    const result = await authed("GET", `${API}/me/activity`);
    const events = result.body && Array.isArray(result.body.events) ? result.body.events : null;
    if (result.status !== 200 || !events) {
      section.hidden = true;
      return;
    }
    const list = $("activity-list");
    list.replaceChildren();
    for (const event of events) {
      if (!ACTIVITY[event.event]) continue;
      const item = document.createElement("li");
      item.className = "session";
      const text = document.createElement("div");
      const title = document.createElement("div");
      title.className = "session-device";
      title.textContent = t(ACTIVITY[event.event]);
      if (event.current) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = t("This device");
        title.append(badge);
      }
      const meta = document.createElement("div");
      meta.className = "session-meta";
      meta.textContent = [
        when(event.at),
        event.device,
        event.ip,
        METHODS[event.method] ? t(METHODS[event.method]) : "",
      ]
        .filter(Boolean)
        .join(" · ");
      text.append(title, meta);
      item.append(text);
      list.append(item);
    }
    section.hidden = list.children.length === 0;
  }

  signOutButton.addEventListener("click", async () => {
    setBusy(signOutButton, true, t("Signing out"));
    const result = await authed("POST", `${API}/logout`);
    setBusy(signOutButton, false);
    // 401: the session had already ended; either way this browser is signed out.
    if (result.status === 200 || result.status === 401) {
      emailInput.value = "";
      showEmailStep(t("You are signed out."));
      return;
    }
    setText(doneError, genericFailure(result));
  });

  // What passkeys.js uses of this page.
  window.emailSignIn = { API, call, authed, t, when, showSignedIn, clearPending, stopApproval };

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
      startApproval(pending.approvalNumber);
      return;
    }
    showEmailStep();
  }

  start();
})();
