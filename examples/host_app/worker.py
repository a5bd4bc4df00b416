"""Celery entry point: `celery -A worker worker` (runs the sign-in email task)."""

from host import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
