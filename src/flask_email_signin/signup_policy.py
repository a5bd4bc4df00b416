"""Who may sign up: invite-only, domain allow and deny lists, and disposable addresses.

Decided where sign-up was always decided, never on request-otp's request path: the
worker does not mail a code to an address that may not sign up (and has no account),
and the sign-in store does not create its account. So request-otp answers byte for
byte the same for every address, and its timing does not depend on the policy.

Domains match exactly or as a parent ("example.com" covers "eu.example.com").
Disposable domains come from the maintained `disposable-email-domains` list;
existing accounts are never refused by it, only new sign-ups.
"""

from __future__ import annotations

from disposable_email_domains import blocklist as disposable_domains

from .settings import settings


def _domain_and_parents(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def _listed(domain: str, listed: frozenset[str]) -> bool:
    return any(candidate in listed for candidate in _domain_and_parents(domain))


def is_disposable(domain: str) -> bool:
    return any(candidate in disposable_domains for candidate in _domain_and_parents(domain))


def signup_allowed(email: str) -> bool:
    """Whether an address without an account may create one by signing in."""
    if not settings.allow_signup:
        return False
    domain = email.rsplit("@", 1)[-1].lower()
    allowed = settings.signup_allowed_domains
    if allowed and not _listed(domain, allowed):
        return False
    if _listed(domain, settings.signup_denied_domains):
        return False
    return not (settings.signup_block_disposable and is_disposable(domain))
