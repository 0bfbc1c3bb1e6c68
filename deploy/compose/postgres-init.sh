#!/bin/sh
# Runs once, on the first start with an empty data volume (the postgres image's initdb
# hook): for every service in MERCATO_SERVICES, a login role and a database owned by it,
# reachable by that role alone, as `mercato up` makes them on a laptop. Each password comes
# from <SERVICE>_DATABASE_PASSWORD in the container's environment (compose's .env).
set -eu
for service in $MERCATO_SERVICES; do
    variable="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DATABASE_PASSWORD"
    password="$(printenv "$variable" || true)"
    if [ -z "$password" ]; then
        echo "postgres-init: $variable is not set" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
         -v role="$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE CONNECT, TEMPORARY ON DATABASE :"role" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"role" TO :"role";
SQL
done
