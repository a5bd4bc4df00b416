// Passkeys on the sign-in page: offered in the email field's autofill (conditional
// mediation) and by a button; after an email sign-in, an offer to create one; once signed
// in, the list with rename and delete. Deleting needs a recent authentication: the page
// confirms with the passkey (step-up), then retries. Uses signin.js's helpers.
"use strict";

(() => {
  const page = window.emailSignIn;
  if (!page || !window.PublicKeyCredential || !navigator.credentials) return;
  const { API, call, authed, t, when } = page;
  const $ = (id) => document.getElementById(id);
  const OFFER_DISMISSED = "passwordless.passkey-offer-dismissed";

  // ---- Encoding: WebAuthn takes ArrayBuffers, the server speaks base64url JSON -------------

  const toBytes = (text) =>
    Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const toText = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer)))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBytes(json.challenge),
      user: { ...json.user, id: toBytes(json.user.id) },
      excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
    };
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBytes(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
    };
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      if (response.userHandle) json.response.userHandle = toText(response.userHandle);
    }
    return json;
  }

  // ---- Sign in with a passkey --------------------------------------------------------------

  let autofill = null; // the pending conditional request, aborted when the step changes

  async function signInWithPasskey(mediation) {
    const started = await call("POST", `${API}/passkeys/authenticate/options`);
    if (started.status !== 200) return null;
    const controller = new AbortController();
    if (mediation === "conditional") autofill = controller;
    let credential;
    try {
      credential = await navigator.credentials.get({
        publicKey: requestOptions(started.body.options),
        mediation,
        signal: controller.signal,
      });
    } catch (cancelled) {
      return null;
    }
    const result = await call("POST", `${API}/passkeys/authenticate`, {
      json: { ceremony: started.body.ceremony, credential: credentialJSON(credential) },
    });
    if (result.status === 200) {
      page.stopApproval();
      page.clearPending();
      await page.showSignedIn();
    }
    return result;
  }

  function stopAutofill() {
    if (autofill) autofill.abort();
    autofill = null;
  }

  async function offerAutofill() {
    stopAutofill();
    const available =
      PublicKeyCredential.isConditionalMediationAvailable &&
      (await PublicKeyCredential.isConditionalMediationAvailable());
    if (available) signInWithPasskey("conditional");
  }

  const signInBox = $("passkey-signin");
  const signInError = $("passkey-error");
  signInBox.hidden = false;
  $("passkey-button").addEventListener("click", async () => {
    stopAutofill();
    signInError.hidden = true;
    const result = await signInWithPasskey("required");
    if (!result || result.status !== 200) {
      signInError.textContent =
        result && result.body && result.body.error && result.status === 429
          ? result.body.error.message
          : t("Signing in with a passkey was cancelled or did not work. Try again, or use a code from your email.");
      signInError.hidden = false;
    }
  });

  document.addEventListener("email-signin:step", (event) => {
    if (event.detail.step === "email") offerAutofill();
    else stopAutofill();
  });

  // ---- Create a passkey --------------------------------------------------------------------

  async function createPasskey() {
    const started = await authed("POST", `${API}/passkeys/register/options`);
    if (started.status !== 200) return false;
    let credential;
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(started.body) });
    } catch (cancelled) {
      return false;
    }
    const saved = await authed("POST", `${API}/passkeys/register`, {
      json: { credential: credentialJSON(credential) },
    });
    return saved.status === 201;
  }

  const offer = $("passkey-offer");
  const status = $("passkey-status");

  function say(text) {
    status.textContent = text;
    status.hidden = !text;
  }

  $("passkey-create").addEventListener("click", async () => {
    const created = await createPasskey();
    offer.hidden = created;
    await loadPasskeys();
    say(created ? t("Passkey created.") : t("No passkey was created. You can try again at any time."));
  });
  $("passkey-later").addEventListener("click", () => {
    offer.hidden = true;
    try {
      localStorage.setItem(OFFER_DISMISSED, "1");
    } catch (storageOff) {
      /* the offer comes back next time */
    }
  });
  $("passkey-add").addEventListener("click", async () => {
    const created = await createPasskey();
    await loadPasskeys();
    say(created ? t("Passkey created.") : t("No passkey was created. You can try again at any time."));
  });

  // ---- Step-up: confirm with the passkey, then retry ----------------------------------------

  async function confirmWithPasskey() {
    say(t("Confirm it is you with your passkey to continue."));
    const started = await authed("POST", `${API}/step-up/options`);
    if (started.status !== 200) return false;
    let credential;
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptions(started.body.options) });
    } catch (cancelled) {
      return false;
    }
    const confirmed = await authed("POST", `${API}/step-up`, {
      json: { ceremony: started.body.ceremony, credential: credentialJSON(credential) },
    });
    say("");
    return confirmed.status === 200;
  }

  async function withRecentSignIn(method, path, options) {
    let result = await authed(method, path, options);
    const code = result.body && result.body.error ? result.body.error.code : "";
    if (result.status === 401 && code === "fresh_login_required" && (await confirmWithPasskey())) {
      result = await authed(method, path, options);
    }
    return result;
  }

  // ---- The list ----------------------------------------------------------------------------

  const section = $("passkeys");
  const list = $("passkey-list");

  function row(passkey) {
    const item = document.createElement("li");
    item.className = "session";
    const text = document.createElement("div");
    const name = document.createElement("div");
    name.className = "session-device";
    name.textContent = passkey.name;
    const meta = document.createElement("div");
    meta.className = "session-meta";
    meta.textContent = [
      passkey.last_used_at
        ? t("last used {when}", { when: when(passkey.last_used_at) })
        : t("created {when}", { when: when(passkey.created_at) }),
      passkey.backed_up ? t("synced") : "",
    ]
      .filter(Boolean)
      .join(" · ");
    text.append(name, meta);

    const actions = document.createElement("div");
    actions.className = "row-actions";
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "button link";
    rename.textContent = t("Rename");
    rename.setAttribute("aria-label", t("Rename {name}", { name: passkey.name }));
    rename.addEventListener("click", () => startRename(item, passkey));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button link";
    remove.textContent = t("Delete");
    remove.setAttribute("aria-label", t("Delete {name}", { name: passkey.name }));
    remove.addEventListener("click", async () => {
      const deleted = await withRecentSignIn("DELETE", `${API}/passkeys/${passkey.id}`);
      if (deleted.status === 200) {
        say(t("Passkey deleted."));
        await loadPasskeys();
      } else if (deleted.body && deleted.body.error) {
        say(deleted.body.error.message);
      }
    });
    actions.append(rename, remove);
    item.append(text, actions);
    return item;
  }

  function startRename(item, passkey) {
    const form = document.createElement("form");
    form.className = "rename";
    const label = document.createElement("label");
    label.textContent = t("Passkey name");
    const input = document.createElement("input");
    input.type = "text";
    input.maxLength = 64;
    input.required = true;
    input.value = passkey.name;
    label.append(input);
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button primary";
    save.textContent = t("Save");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button link";
    cancel.textContent = t("Cancel");
    cancel.addEventListener("click", () => loadPasskeys());
    form.append(label, save, cancel);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const renamed = await authed("PATCH", `${API}/passkeys/${passkey.id}`, {
        json: { name: input.value.trim() },
      });
      if (renamed.status !== 200 && renamed.body && renamed.body.error) {
        say(renamed.body.error.message);
      }
      await loadPasskeys();
    });
    item.replaceChildren(form);
    input.focus();
    input.select();
  }

  async function loadPasskeys() {
    const result = await authed("GET", `${API}/passkeys`);
    if (result.status !== 200) {
      section.hidden = true;
      return [];
    }
    const passkeys = result.body.passkeys;
    list.replaceChildren(...passkeys.map(row));
    section.hidden = false;
    return passkeys;
  }

  document.addEventListener("email-signin:signed-in", async () => {
    say("");
    const passkeys = await loadPasskeys();
    let dismissed = false;
    try {
      dismissed = localStorage.getItem(OFFER_DISMISSED) === "1";
    } catch (storageOff) {
      dismissed = false;
    }
    offer.hidden = passkeys.length > 0 || dismissed;
  });

  // The email step may already be showing.
  if (!$("step-email").hidden) offerAutofill();
})();
