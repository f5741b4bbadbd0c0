#!/usr/bin/env bash
# Start an MLflow tracking server for a team or a cluster sweep.
#   scripts/mlflow_server.sh                       # 127.0.0.1:5000, SQLite store and artifacts under ./server/
#   HOST=0.0.0.0 PORT=5000 BACKEND=postgresql://user:pw@db/mlflow ARTIFACTS=s3://bucket/mlflow scripts/mlflow_server.sh
# PostgreSQL needs the driver of the `server` extra (pip install -e '.[server]': psycopg 3); the database must exist
# and be empty or MLflow's (the server migrates it on start). Tested: tests/test_postgres.py.
# Binds to loopback unless HOST says otherwise. MLflow's server has no authentication of its own by default:
# before exposing it, put it behind a reverse proxy with TLS and auth, or use `mlflow server --app-name basic-auth`
# (MLflow's built-in basic authentication, configured by MLFLOW_AUTH_CONFIG_PATH).
source "$(dirname "$0")/_env.sh"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
mkdir -p "$ROOT/server"
BACKEND="${BACKEND:-sqlite:///$ROOT/server/mlflow.db}"
ARTIFACTS="${ARTIFACTS:-$ROOT/server/artifacts}"
# postgresql:// means psycopg2 to SQLAlchemy 2.0 and psycopg 3 to 2.1: name the driver the server extra installs
case "$BACKEND" in postgresql://*) BACKEND="postgresql+psycopg://${BACKEND#postgresql://}" ;; esac
echo "MLflow server on http://$HOST:$PORT  (backend $BACKEND, artifacts $ARTIFACTS)" >&2
echo "jobs: python -m benchmark.run -m tracking=server ...  (or MLFLOW_TRACKING_URI=http://$HOST:$PORT)" >&2
exec mlflow server --host "$HOST" --port "$PORT" --backend-store-uri "$BACKEND" \
  --artifacts-destination "$ARTIFACTS" --serve-artifacts --workers "${WORKERS:-2}" "$@"
