"""Celery entry point: `celery -A worker worker` runs tasks inside the Flask app."""

import socket

from app import create_app
from app.logs import configure_logging

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# JSON lines carrying the id of the request that queued each task.
configure_logging(flask_app.config["OTP_LOG_LEVEL"])

# Flask-Mail's SMTP connections have no timeout of their own: a stalled mail server
# must fail the send (and schedule a retry) instead of hanging the worker forever.
socket.setdefaulttimeout(flask_app.config["MAIL_TIMEOUT_SECONDS"])
