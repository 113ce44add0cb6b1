"""The example's "mail": each message's link, logged at INFO on ``app_db.example.mail``.

An app sends real mail here (SMTP, a mail API). A log line is a development stand-in, so it
is INFO, never WARNING or above, where logs are kept longer and read by more people: the link
carries a token that works until it expires or is used.
"""

import logging

from app_db.fastapi import Mail, Mailer

logger = logging.getLogger("app_db.example.mail")
PAGES = {
    "password_reset": "reset-password",  # pragma: allowlist secret - a page's name
    "email_verification": "verify-email",
}


def mailer(base_url: str) -> Mailer:
    """Return the ``send`` of ``recovery_routes``: it logs the link a mail would carry."""

    async def send(mail: Mail) -> None:
        link = f"{base_url.rstrip('/')}/{PAGES[mail.purpose]}?token={mail.token}"
        logger.info("mail (%s) to user %s: %s", mail.purpose, mail.user_id, link)

    return send
