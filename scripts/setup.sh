#!/usr/bin/env bash
# Install what building, running and testing redis-campaign needs on Debian
# (bookworm): Redis, PostgreSQL, a C toolchain and libclang (for bindgen), and
# make sure cargo is available. Idempotent; does nothing when all is present.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PACKAGES=(redis-server redis-tools postgresql libclang-dev build-essential pkg-config libssl-dev openssl pgbouncer)
MIN_RUST="1.90" # Cargo.toml rust-version

command -v dpkg >/dev/null 2>&1 || die "dpkg not found: this script supports Debian and derivatives only"

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# cargo: normally from rustup (~/.cargo/bin); Debian's package as a fallback.
ensure_cargo_on_path
if ! command -v cargo >/dev/null 2>&1; then
    warn "cargo not found; installing Debian's cargo package."
    warn "Debian bookworm ships an old Rust (1.63); this project needs Rust $MIN_RUST or newer."
    warn "If the build fails, install Rust with rustup (https://rustup.rs) and re-run."
    apt_install cargo
fi
command -v cargo >/dev/null 2>&1 || die "cargo is still not available"

if ! rust_version="$(rustc --version 2>/dev/null)"; then
    die "cargo is present but rustc does not run (with rustup: 'rustup default stable')"
fi
# "rustc 1.95.0 (59807616e 2026-04-14)" -> "1.95.0"
rust_version="${rust_version#rustc }"
rust_version="${rust_version%% *}"
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$rust_version" | sort -V | head -n 1)" != "$MIN_RUST" ]; then
    warn "rustc $rust_version found; Rust $MIN_RUST or newer is needed (rustup update stable)."
fi
