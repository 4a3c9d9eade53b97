# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Source it; do not run it.
# shellcheck disable=SC2034 # variables used by the scripts that source this

# Absolute path of the repository root (the parent of scripts/).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where start.sh/stop.sh keep the servers' data, logs and pid files.
# CAMPAIGN_RUN_DIR gives another one (the examples run their own servers).
RUN_DIR="${CAMPAIGN_RUN_DIR:-$REPO_ROOT/.run}"
MODULE_SO="$REPO_ROOT/target/release/libredis_campaign.so"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Is a Debian package installed?
is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# Run a command as root: directly, through sudo, or not at all.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# apt-get install the given Debian packages (as root or through sudo).
apt_install() {
    local apt_env=(env DEBIAN_FRONTEND=noninteractive)
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        die "not root and sudo is not available; as root, run: apt-get update && apt-get install -y $*"
    fi
    log "installing: $*"
    as_root "${apt_env[@]}" apt-get update -qq
    as_root "${apt_env[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# rustup installs cargo into ~/.cargo/bin, which non-login shells often lack.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1; then
        local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
        if [ -x "$cargo_home/bin/cargo" ]; then
            PATH="$cargo_home/bin:$PATH"
            export PATH
        fi
    fi
}

# Directory holding initdb/pg_ctl/postgres: the highest version installed.
pg_bin_dir() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] || continue
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n 1)" = "$dir" ]; then
            best="$dir"
        fi
    done
    [ -n "$best" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (run scripts/setup.sh)"
    printf '%s\n' "$best"
}

# Run a PostgreSQL server tool. initdb and pg_ctl refuse to run as root, so as
# root they run as the postgres user (from /, whose directory it can read).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Is a TCP port on 127.0.0.1 accepting connections?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
