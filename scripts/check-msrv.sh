#!/usr/bin/env bash
# Checks that the Rust named by Cargo.toml's rust-version builds every target
# (cargo check --all-targets --locked, in target/msrv), installing that
# toolchain with rustup (minimal profile) where missing. Cargo refuses a
# dependency that needs a newer Rust, and the compiler any newer language or
# library feature; clippy's incompatible_msrv lint (CI's clippy run) flags
# newer standard-library calls too.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_cargo_on_path
cd "$REPO_ROOT"
msrv="$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' Cargo.toml)"
[ -n "$msrv" ] || die "Cargo.toml has no rust-version"
# "1.90" -> toolchain "1.90.0"
toolchain="$msrv"
case "$toolchain" in *.*.*) ;; *) toolchain="$toolchain.0" ;; esac
command -v rustup >/dev/null 2>&1 || die "rustup is needed to check rust-version $msrv"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    log "installing Rust $toolchain (rustup, minimal profile)"
    if ! rustup toolchain install "$toolchain" --profile minimal; then
        # A machine that cannot download toolchains cannot run this check;
        # clippy's incompatible_msrv lint still guards the standard library.
        warn "Rust $toolchain could not be installed: rust-version not checked here"
        exit 0
    fi
fi
log "cargo +$toolchain check --all-targets --locked"
cargo "+$toolchain" check --all-targets --locked --target-dir target/msrv
