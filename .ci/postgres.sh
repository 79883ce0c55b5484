#!/usr/bin/env bash
# Install (if needed) and start a local PostgreSQL for the history-store tests, then print the URL.
# Debian's package; the server listens on 127.0.0.1 only. The role and its password are throwaway
# test credentials of this CI machine, not secrets of any deployment.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | awk '{print $2}' | grep -qx main || pg_createcluster "$ver" main >&2
pg_ctlcluster "$ver" main start >&2 2>/dev/null || pg_ctlcluster "$ver" main status >/dev/null
for _ in $(seq 1 30); do runuser -u postgres -- pg_isready -q -h 127.0.0.1 && break; sleep 1; done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 >&2 <<'SQL'
DO $$ BEGIN
  CREATE ROLE bench_ci LOGIN PASSWORD 'bench-ci-only';
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
SQL
runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_database WHERE datname = 'bench_ci'" | grep -q 1 \
  || runuser -u postgres -- createdb -O bench_ci bench_ci >&2
# A second throwaway role whose password is every printable ASCII character (shuffled; ' doubled
# for SQL): the tests connect with it, percent-encoded in a URL and quoted in key=value, and check
# that no piece of it reaches a message, stderr or run.json (tests/test_stores.py: SPECIAL_PASSWORD).
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d bench_ci >&2 <<'SQL'
DO $$ BEGIN
  CREATE ROLE bench_ci_special LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
ALTER ROLE bench_ci_special PASSWORD 'OgxDrHpU_a\@ysmk>6Kj.7!d^*1YR3+-|M"B($&P)A[S8Gfib,L{hZXn4CJF= Iu/Ecz}NQv;w2<#~T?Vq5`o%]0''elW:t9';
GRANT CREATE ON DATABASE bench_ci TO bench_ci_special;
SQL
echo "postgresql://bench_ci:bench-ci-only@127.0.0.1:5432/bench_ci"
