"""WSGI entry point: `gunicorn wsgi:app`."""

from host import create_app

app = create_app()
