#!/usr/bin/env bash
# Create the peer-benchmark virtualenvs under bench/ from the pinned requirements.
# Usage: bash bench/peers/setup.sh [dtdb|celery|pgqueuer|huey|procrastinate|all]   (default: all)
# Idempotent: a venv is rebuilt only when its requirements file changed
# (sha256 stamp kept inside the venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="$(dirname "$HERE")"
WHICH="${1:-all}"
PEERS="dtdb celery pgqueuer huey procrastinate"

find_python() {
    local cand
    for cand in python3.13 python3.12; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys' >/dev/null 2>&1; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in $(ls -d "$(pyenv root)"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
            if [ -x "$cand/bin/python3" ] && "$cand/bin/python3" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
                echo "$cand/bin/python3"; return 0
            fi
        done
    fi
    for cand in python3 python; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    return 1
}

make_venv() {  # $1 = name (dtdb|celery|pgqueuer|huey|procrastinate)
    local req="$HERE/requirements-$1.txt" venv="$BENCH/.venv-peers-$1"
    local want; want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
        echo "[setup] $venv is up to date"; return 0
    fi
    local py; py="$(find_python)" || { echo "[setup] no working Python >= 3.12 found" >&2; exit 1; }
    echo "[setup] creating $venv with $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    echo "[setup] installing $(basename "$req")"
    "$venv/bin/python" -m pip install --quiet --no-deps -r "$req"
    "$venv/bin/python" -m pip check
    echo "$want" > "$venv/.requirements.sha256"
    echo "[setup] $venv ready"
}

case "$WHICH" in
    dtdb|celery|pgqueuer|huey|procrastinate) make_venv "$WHICH" ;;
    all) for peer in $PEERS; do make_venv "$peer"; done ;;
    *) echo "usage: $0 [${PEERS// /|}|all]" >&2; exit 2 ;;
esac
