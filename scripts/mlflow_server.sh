#!/usr/bin/env bash
# Start an MLflow tracking server for a team or a cluster sweep.
#   scripts/mlflow_server.sh                       # 127.0.0.1:5000, SQLite store and artifacts under ./server/
#   HOST=0.0.0.0 ALLOWED_HOSTS=mlflow.lab.example,10.0.0.5:5000 AUTH_CONFIG=auth.ini \
#     BACKEND=postgresql://user@db/mlflow ARTIFACTS=s3://bucket/mlflow scripts/mlflow_server.sh
# PostgreSQL needs the driver of the `server` extra (pip install -e '.[server]': psycopg 3); the database must exist
# and be empty or MLflow's (the server migrates it on start). Tested: tests/test_postgres.py.
# Binds to loopback unless HOST says otherwise. AUTH_CONFIG=<file> starts MLflow's authentication app (users and
# per-experiment permissions; the file names the admin and their password and must be readable by its owner only:
# chmod 600; never a password on the command line). ALLOWED_HOSTS and CORS_ORIGINS set the server's Host-header and
# CORS protections (defaults: HOST and loopback; no cross-origin page). Put TLS in front with a reverse proxy
# (docs/how-to/clusters-and-team-server.md); artifacts are served through the server (--serve-artifacts).
caller="$PWD"  # _env.sh moves to the project: a relative AUTH_CONFIG is the caller's
source "$(dirname "$0")/_env.sh"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
mkdir -p "$ROOT/server"
BACKEND="${BACKEND:-sqlite:///$ROOT/server/mlflow.db}"
ARTIFACTS="${ARTIFACTS:-$ROOT/server/artifacts}"
# postgresql:// means psycopg2 to SQLAlchemy 2.0 and psycopg 3 to 2.1: name the driver the server extra installs
case "$BACKEND" in postgresql://*) BACKEND="postgresql+psycopg://${BACKEND#postgresql://}" ;; esac
app=()
if [ -n "${AUTH_CONFIG:-}" ]; then
  case "$AUTH_CONFIG" in /*) ;; *) AUTH_CONFIG="$caller/$AUTH_CONFIG" ;; esac
  [ -f "$AUTH_CONFIG" ] || { echo "error: AUTH_CONFIG=$AUTH_CONFIG is not a file" >&2; exit 2; }
  mode=$(stat -c %a "$AUTH_CONFIG" 2>/dev/null || stat -f %Lp "$AUTH_CONFIG")  # GNU, else BSD/macOS stat
  case "$mode" in
    [4-7]00) ;;
    *) echo "error: $AUTH_CONFIG holds the admin's password and is readable by others (mode $mode): chmod 600 it" >&2
       exit 2 ;;
  esac
  export MLFLOW_AUTH_CONFIG_PATH="$AUTH_CONFIG"
  app=(--app-name basic-auth)
fi
if [ -z "${ALLOWED_HOSTS:-}" ]; then
  case "$HOST" in
    127.*|localhost) ALLOWED_HOSTS="$HOST,$HOST:$PORT,localhost,localhost:$PORT,127.0.0.1,127.0.0.1:$PORT" ;;
    ::1) ALLOWED_HOSTS="[::1],[::1]:$PORT,localhost,localhost:$PORT" ;;
    *) echo "error: HOST=$HOST exposes the server beyond this machine: name the host names its clients use in" \
         "ALLOWED_HOSTS (e.g. ALLOWED_HOSTS=mlflow.lab.example,10.0.0.5:$PORT), its Host-header protection" >&2
       exit 2 ;;
  esac
fi
CORS_ORIGINS="${CORS_ORIGINS:-http://127.0.0.1:$PORT,http://localhost:$PORT}"
echo "MLflow server on http://$HOST:$PORT  (backend $BACKEND, artifacts $ARTIFACTS${AUTH_CONFIG:+, authentication from $AUTH_CONFIG})" >&2
echo "jobs: python -m benchmark.run -m tracking=server ...  (or MLFLOW_TRACKING_URI=http://$HOST:$PORT)" >&2
exec mlflow server --host "$HOST" --port "$PORT" --backend-store-uri "$BACKEND" \
  --artifacts-destination "$ARTIFACTS" --serve-artifacts --workers "${WORKERS:-2}" \
  --allowed-hosts "$ALLOWED_HOSTS" --cors-allowed-origins "$CORS_ORIGINS" ${app[@]+"${app[@]}"} "$@"
