#!/usr/bin/env bash
# Tests the container (called from .ci/run):
#   1. a Docker engine: Debian's docker.io, started here when none answers
#      (dockerd --storage-driver vfs --iptables=false --bridge=none, so every
#      container runs with --network host), and stopped again at the end;
#   2. the base image: nothing can be pulled, so `debootstrap --variant=minbase
#      bookworm` makes a root file system, cached as a tarball under
#      .run/docker/ and `docker import`ed as campaign-base:bookworm;
#   3. the module's image (Dockerfile) from target/release's module, started
#      against a PostgreSQL on this machine (scripts/start.sh, in
#      .run/examples/docker): members added through it reach PostgreSQL, a
#      campaign only PostgreSQL holds is loaded, and the data survives a
#      restart of the container (AOF in the /data volume);
#   4. docker-compose.yml (Debian's docker-compose) with PostgreSQL built from
#      docker/postgres.Dockerfile: a member added reaches its table.
# Installs docker.io, debootstrap and docker-compose with apt-get where
# missing. Stops what it started, pass or fail.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../examples/lib.sh"

DOCKER_RUN="$REPO_ROOT/.run/docker"
BASE_IMAGE="campaign-base:bookworm"
BASE_TAR="$DOCKER_RUN/bookworm-minbase.tar"
IMAGE="redis-campaign:latest"
CONTAINER="redis-campaign-test"
COMPOSE_PROJECT="campaigntest"
DOCKERD_PID=""
mkdir -p "$DOCKER_RUN"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# Removes the test's containers and volumes, stops a dockerd started here,
# then the PostgreSQL and redis-server of scripts/start.sh.
docker_cleanup() {
    local status=$?
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    docker volume rm -f "$CONTAINER-data" >/dev/null 2>&1 || true
    (cd "$REPO_ROOT" && docker-compose -p "$COMPOSE_PROJECT" down -v >>"$DOCKER_RUN/compose.log" 2>&1) || true
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    (exit "$status")
    example_cleanup
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        log "docker: using the engine that answers ($(docker version -f '{{.Server.Version}}'))"
        return 0
    fi
    log "docker: starting dockerd (vfs, no iptables, no bridge; log $DOCKER_RUN/dockerd.log)"
    dockerd --storage-driver vfs --iptables=false --bridge=none >"$DOCKER_RUN/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 300); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$DOCKER_RUN/dockerd.log" >&2
    die "dockerd did not start; see $DOCKER_RUN/dockerd.log"
}

# The Debian bookworm base image, from the cached tarball or debootstrap.
make_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    if [ ! -s "$BASE_TAR" ]; then
        local rootfs="$DOCKER_RUN/rootfs"
        rm -rf "$rootfs"
        log "docker: debootstrap --variant=minbase bookworm (log $DOCKER_RUN/debootstrap.log)"
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
            >"$DOCKER_RUN/debootstrap.log" 2>&1 || die "debootstrap failed; see $DOCKER_RUN/debootstrap.log"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . >"$BASE_TAR.part"
        mv "$BASE_TAR.part" "$BASE_TAR"
        rm -rf "$rootfs"
    fi
    log "docker: docker import $BASE_TAR $BASE_IMAGE"
    docker import "$BASE_TAR" "$BASE_IMAGE" >/dev/null
}

# wait_for_redis PORT: PONG within 30 s.
wait_for_redis() {
    for _ in $(seq 1 300); do
        [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    return 1
}

start_dockerd
make_base_image

ensure_cargo_on_path
log "docker: cargo build --release (the image takes the module built here)"
(cd "$REPO_ROOT" && cargo build --release --quiet)

log "docker: docker build -t $IMAGE (log $DOCKER_RUN/build.log)"
docker build --network host --build-arg BASE="$BASE_IMAGE" -t "$IMAGE" "$REPO_ROOT" \
    >"$DOCKER_RUN/build.log" 2>&1 || {
    tail -n 20 "$DOCKER_RUN/build.log" >&2
    die "docker build failed; see $DOCKER_RUN/build.log"
}

example_init docker 17700 17750
example_start_servers
trap docker_cleanup EXIT

# --- the image against PostgreSQL on this machine ---------------------------

CPORT="$(free_port_from 17710)"
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
docker volume rm -f "$CONTAINER-data" >/dev/null 2>&1 || true
log "docker: docker run $IMAGE --port $CPORT (PostgreSQL on port $PG_PORT)"
docker run -d --name "$CONTAINER" --network host -v "$CONTAINER-data:/data" \
    -e CAMPAIGN_DATABASE_URL="host=127.0.0.1 port=$PG_PORT dbname=campaign user=postgres connect_timeout=5" \
    -e CAMPAIGN_FLUSH_INTERVAL_MS=50 \
    "$IMAGE" --port "$CPORT" >/dev/null
wait_for_redis "$CPORT" || {
    docker logs "$CONTAINER" 2>&1 | tail -n 20 >&2
    die "the container's redis-server does not answer on port $CPORT"
}
crcli() { redis-cli -p "$CPORT" "$@"; }
expect_eq "server in the image" "7.0.15" "$(crcli INFO server | sed -n 's/^redis_version:\([0-9.]*\).*/\1/p')"
expect_eq "module loaded" "campaign" "$(crcli MODULE LIST | sed -n 2p)"
expect_eq "runs as" "redis" "$(docker exec "$CONTAINER" id -un)"
expect_eq "setting from CAMPAIGN_FLUSH_INTERVAL_MS" "50" "$(crcli CONFIG GET campaign.flush-interval-ms | sed -n 2p)"
expect_eq "ADD" 3 "$(crcli CAMPAIGN.ADD docker-sale user:1 user:2 user:3)"
expect_eq "FLUSH" 3 "$(crcli CAMPAIGN.FLUSH 20000)"
expect_eq "rows in PostgreSQL" "user:1 user:2 user:3" \
    "$(pg -c "SELECT string_agg(member, ' ' ORDER BY member) FROM campaign_members WHERE campaign = 'docker-sale'")"
pg -c "INSERT INTO campaign_members (campaign, member) SELECT 'db-only', 'm' || i FROM generate_series(1, 1000) i"
expect_eq "HAS of a campaign only PostgreSQL holds (read-through)" 1 "$(crcli CAMPAIGN.HAS db-only m500)"
expect_eq "REBUILD" 1000 "$(crcli CAMPAIGN.REBUILD db-only)"
expect_eq "VERIFY consistent" 1 "$(crcli CAMPAIGN.VERIFY db-only | awk 'prev == "consistent" { print; exit } { prev = $0 }')"
expect_eq "REM" 1 "$(crcli CAMPAIGN.REM docker-sale user:2)"
log "docker: docker restart (the AOF in the /data volume)"
docker restart "$CONTAINER" >/dev/null
wait_for_redis "$CPORT" || die "the container did not come back after docker restart"
expect_eq "CARD after the restart" 2 "$(crcli CAMPAIGN.CARD docker-sale)"
crcli CAMPAIGN.FLUSH 20000 >/dev/null
expect_eq "rows after the restart" "user:1 user:3" \
    "$(pg -c "SELECT string_agg(member, ' ' ORDER BY member) FROM campaign_members WHERE campaign = 'docker-sale'")"
docker rm -f "$CONTAINER" >/dev/null

# --- docker-compose.yml: the image beside PostgreSQL built from the base -----

COMPOSE_REDIS_PORT="$(free_port_from 17720)"
COMPOSE_PG_PORT="$(free_port_from 17760)"
export CAMPAIGN_BASE_IMAGE="$BASE_IMAGE" CAMPAIGN_REDIS_PORT="$COMPOSE_REDIS_PORT" CAMPAIGN_PG_PORT="$COMPOSE_PG_PORT"
log "docker: docker-compose up -d --build (Redis $COMPOSE_REDIS_PORT, PostgreSQL $COMPOSE_PG_PORT; log $DOCKER_RUN/compose.log)"
(cd "$REPO_ROOT" && docker-compose -p "$COMPOSE_PROJECT" up -d --build >"$DOCKER_RUN/compose.log" 2>&1) || {
    tail -n 20 "$DOCKER_RUN/compose.log" >&2
    die "docker-compose up failed; see $DOCKER_RUN/compose.log"
}
wait_for_redis "$COMPOSE_REDIS_PORT" || die "compose's redis-server does not answer on port $COMPOSE_REDIS_PORT"
expect_eq "compose: ADD" 1 "$(redis-cli -p "$COMPOSE_REDIS_PORT" CAMPAIGN.ADD compose-sale user:42)"
# PostgreSQL may still be starting: FLUSH waits until the row is committed.
expect_eq "compose: FLUSH" 1 "$(redis-cli -p "$COMPOSE_REDIS_PORT" CAMPAIGN.FLUSH 60000)"
expect_eq "compose: row in PostgreSQL" "user:42" \
    "$(PGPASSWORD=campaign "$PG_BIN/psql" -X -q -tA -h 127.0.0.1 -p "$COMPOSE_PG_PORT" -U postgres -d campaign \
        -c "SELECT member FROM campaign_members WHERE campaign = 'compose-sale'")"
log "docker: all checks passed"
