#!/usr/bin/env bash
# mkdb.sh DB VARIANT PENDING HISTORY
set -euo pipefail
cd "$(dirname "$0")"
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $1" -c "create database $1"
./schema.sh "$2" | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$1"
./load.sh "$@"
