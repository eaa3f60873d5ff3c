#!/bin/sh
# The image's entrypoint: secrets arrive as files (compose secrets, under /run/secrets); Prefect reads
# variables. For each VAR below whose VAR_FILE is set, VAR gets that file's content (trailing newlines
# dropped) and VAR_FILE is unset; then the command runs. A database URL takes its password from
# Prefect's own placeholder: postgresql+asyncpg://prefect:${PREFECT_SERVER_DATABASE_PASSWORD}@postgres/prefect
# Docket's Redis URL has no such placeholder of Prefect's, so this script fills in the one
# ${PREFECT_REDIS_MESSAGING_PASSWORD} in PREFECT_SERVER_DOCKET_URL (hex passwords need no URL quoting).
set -eu
for var in PREFECT_API_AUTH_STRING PREFECT_SERVER_API_AUTH_STRING PREFECT_SERVER_DATABASE_PASSWORD \
           PREFECT_REDIS_MESSAGING_PASSWORD PREFECT_REDIS_WORKER_CLEANUP_QUEUE_PASSWORD; do
  eval "file=\${${var}_FILE:-}"
  [ -n "$file" ] || continue
  if [ ! -r "$file" ]; then
    echo "assetline-entrypoint: ${file}: cannot read the secret for ${var} (it must be readable by uid $(id -u))" >&2
    exit 78
  fi
  value=$(cat "$file")
  export "${var}=${value}"
  unset "${var}_FILE"
done
placeholder='${PREFECT_REDIS_MESSAGING_PASSWORD}'
case "${PREFECT_SERVER_DOCKET_URL:-}" in
  *"$placeholder"*)
    url=$PREFECT_SERVER_DOCKET_URL
    export PREFECT_SERVER_DOCKET_URL="${url%%"$placeholder"*}${PREFECT_REDIS_MESSAGING_PASSWORD:-}${url#*"$placeholder"}"
    ;;
esac
exec "$@"
