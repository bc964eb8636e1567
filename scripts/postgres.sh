#!/usr/bin/env bash
# Starts a PostgreSQL server for Aqueduct's tests, on 127.0.0.1 with TLS (a CA and a
# server certificate made here), a role and a database; installs the distribution's
# `postgresql` package first if no server is found. Idempotent: a server it started
# before is reused. Prints the lines to `eval`:
#
#   eval "$(scripts/postgres.sh)"    # exports DATABASE_URL and AQUEDUCT_PG_CA
#
# Settings (environment): AQUEDUCT_PG_PORT (54329), AQUEDUCT_PG_DIR (/tmp/aqueduct-pg).
# Works as root (CI: the server runs as the `postgres` user) and as a normal user.
set -euo pipefail

port=${AQUEDUCT_PG_PORT:-54329}
dir=${AQUEDUCT_PG_DIR:-/tmp/aqueduct-pg}
password=aqueduct-test-secret
url="postgres://aqueduct:${password}@127.0.0.1:${port}/aqueduct"

log() { echo "postgres.sh: $*" >&2; }

bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin=$(bin_dir)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    log "no PostgreSQL server found: installing the distribution's package"
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql openssl >&2
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql openssl >&2
    fi
    bin=$(bin_dir)
fi

# Root may not run the server: it runs as `postgres`, which owns its directory.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    as_server() { runuser -u postgres -- "$@"; }
    owner=postgres
else
    as_server() { "$@"; }
    owner=$(id -un)
fi

if as_server "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    log "reusing the server on port $port"
else
    mkdir -p "$dir"
    chown "$owner" "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        log "creating a cluster in $dir/data"
        rm -rf "$dir/data"
        # TLS: a CA and a server certificate for localhost / 127.0.0.1.
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=aqueduct-test-ca" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 3650 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
        chmod 600 "$dir/server.key"
        chown "$owner" "$dir/server.key" "$dir/server.crt"
        chmod 644 "$dir/ca.crt"
        printf '%s\n' "$password" >"$dir/pwfile"
        chown "$owner" "$dir/pwfile"
        as_server "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 >&2
        cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
max_connections = 200
fsync = on
CONF
    fi
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >&2
    as_server "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aqueduct') THEN
        CREATE ROLE aqueduct LOGIN CREATEDB PASSWORD '$password';
    END IF;
END \$\$;
SQL
    if ! as_server "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'aqueduct'" | grep -q 1; then
        as_server "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres \
            -c "CREATE DATABASE aqueduct OWNER aqueduct" >&2
    fi
fi

echo "export DATABASE_URL='$url'"
echo "export AQUEDUCT_PG_CA='$dir/ca.crt'"
echo "export AQUEDUCT_PG_BIN='$bin'"
echo "export AQUEDUCT_PG_DATA='$dir/data'"
