FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=tcp_dashboard.settings.production \
    VAR_DIR=/var/lib/tcp-dashboard
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /var/lib/tcp-dashboard && chown app /var/lib/tcp-dashboard
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/prod.txt
COPY . .
USER app
EXPOSE 8000
CMD ["gunicorn", "tcp_dashboard.asgi:application", "--worker-class", "asgi", "--bind", "0.0.0.0:8000", \
     "--workers", "3", "--graceful-timeout", "5", "--no-control-socket"]
