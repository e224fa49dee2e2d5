#!/usr/bin/env bash
# Brings up a local PostgreSQL for development and tests, idempotently:
# installs Debian's `postgresql` package where missing, starts the cluster with
# pg_ctlcluster, and creates the `wordup` role (CREATEDB, so tests can make one
# database each) and the `wordup` database. Prints the DATABASE_URL to use.
set -euo pipefail

PG_USER="${WORDUP_PG_USER:-wordup}"
PG_PASSWORD="${WORDUP_PG_PASSWORD:-wordup}"
PG_DB="${WORDUP_PG_DB:-wordup}"
PG_PORT="${WORDUP_PG_PORT:-5432}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    echo "postgres.sh: installing PostgreSQL" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi

# First cluster that exists; Debian creates one named main per major version.
read -r PG_VERSION PG_CLUSTER _ PG_STATUS _ < <(pg_lsclusters -h | head -n1)
if [ "$PG_STATUS" != "online" ]; then
    echo "postgres.sh: starting cluster $PG_VERSION/$PG_CLUSTER" >&2
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
fi
for _ in $(seq 1 50); do
    as_postgres pg_isready -q -p "$PG_PORT" && break
    sleep 0.2
done

as_postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SQL
if ! as_postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_postgres createdb -p "$PG_PORT" -O "$PG_USER" "$PG_DB"
fi

echo "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
