"""The sign-in page script's own messages, handed to it translated (a JSON data block).

Keys are the English messages; `{name}` placeholders are filled in by the script.
Durations and relative times are left to the browser's `Intl` formats, which
know every language's plural rules.
"""

from __future__ import annotations

from .i18n import gettext


def _(message: str) -> str:
    """Marks a message for extraction; translated per request by `page_messages`."""
    return message


SCRIPT_MESSAGES = (
    _("Something went wrong. Please try again."),
    _("We could not reach the server. Check your connection and try again."),
    _("The service is briefly unavailable. Please try again in a moment."),
    _("Resend code in {time}"),
    _("Resend code"),
    _("Sending code"),
    _("Sending"),
    _("Signing in"),
    _("Signing out"),
    _("Enter your email address, like name@example.com."),
    _("The code works once, for {duration}."),
    _("A code was sent to this address moments ago. Enter it, or ask for a new one when "
      "the timer runs out."),
    _("That does not look like an email address. Check it and try again."),
    _("Too many codes were sent to this address. Try again in {duration}."),
    _("Too many attempts. Try again in {duration}."),
    _("Enter the {length}-digit code from the email."),
    _("Too many wrong tries for this code. Ask for a new one with Resend code."),
    _("This code has expired. Ask for a new one with Resend code."),
    _("This code was already used. Ask for a new one with Resend code."),
    _("Too many failed attempts. For your safety, sign-in for this address is paused "
      "for {duration}."),
    _("A new code is on its way. Earlier codes and links no longer work."),
    _("A code was sent moments ago. You can ask for another when the timer runs out."),
    _("Your session ended. Sign in again."),
    _("Unknown device"),
    _("Browser"),
    _("{browser} on {system}"),
    _("This device"),
    _("active {when}"),
    _("signed in {when}"),
    _("just now"),
    _("Sign out"),
    _("Sign out {device}"),
    _("You are signed out."),
    _("The sign-in was denied on the other device. Ask for a new code to try again."),
    _("with a passkey"),
    _("with an email code"),
    _("with an email link"),
    _("approved on another device"),
    _("Rename"),
    _("Delete"),
    _("Save"),
    _("Cancel"),
    _("Passkey name"),
    _("Rename {name}"),
    _("Delete {name}"),
    _("created {when}"),
    _("last used {when}"),
    _("synced"),
    _("Passkey created."),
    _("Passkey deleted."),
    _("No passkey was created. You can try again at any time."),
    _("Signing in with a passkey was cancelled or did not work. Try again, or use a code "
      "from your email."),
    _("Confirm it is you with your passkey to continue."),
    _("Confirming"),
    # Recent activity (GET <prefix>/me/activity), one line per event.
    _("Signed in"),
    _("Signed out"),
    _("Wrong code entered"),
    _("Sign-in paused after too many wrong codes"),
    _("Email link used"),
    _("Address changed"),
    _("Address change undone"),
    _("Passkey added"),
    _("Passkey removed"),
)


def page_messages() -> dict[str, str]:
    """Each script message in this request's language."""
    return {message: gettext(message) for message in SCRIPT_MESSAGES}
