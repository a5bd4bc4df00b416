"""WSGI entry point: `gunicorn wsgi:app`."""

from app import create_app
from flask_email_signin import configure_logging

app = create_app()
configure_logging(app.config["OTP_LOG_LEVEL"])
