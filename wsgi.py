"""WSGI entry point: `gunicorn wsgi:app`."""

from flask_email_signin import configure_logging

from app import create_app

app = create_app()
configure_logging(app.config["OTP_LOG_LEVEL"])
