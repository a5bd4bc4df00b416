# The app and the worker share this image: `./boot.sh` (default) or `celery -A worker worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=wsgi \
    APP_ENV=production

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# Every pinned package ships a manylinux wheel, so no compiler is needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code belongs to root and is read-only for the app; only instance/ is writable.
COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p instance && chown app:app instance
USER app

EXPOSE 8000
CMD ["./boot.sh"]
