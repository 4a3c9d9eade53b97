# redis-campaign: Debian bookworm's Redis 7.0 with the campaign module.
#
# The image takes the module built outside it, on Debian bookworm (or any
# system whose glibc is not newer than bookworm's 2.36):
#
#   cargo build --release
#   docker build -t redis-campaign .
#
# Why not a build stage with a Rust image: the module needs Rust 1.90 or newer
# (Debian bookworm packages 1.63), and on the machines this project is built
# and tested on no Rust image can be pulled and no toolchain downloaded inside
# a build; the host's rustup toolchain builds the same .so. Only
# target/release/libredis_campaign.so and docker/ enter the build context
# (.dockerignore).
#
# BASE is any Debian bookworm image; CI passes one made with debootstrap and
# `docker import` (docker/test.sh), elsewhere the default is pulled. The build
# runs apt-get, so it needs network access (`docker build --network host`
# where the engine runs without a bridge).
#
# Run (the PostgreSQL connection from the environment, written into a
# config file the server reads, so the password is not on a command line):
#
#   docker run --rm --network host \
#     -e CAMPAIGN_DATABASE_URL="host=127.0.0.1 dbname=app user=campaign password=secret" \
#     -v campaign-data:/data redis-campaign
#
# Extra arguments go to redis-server (`... redis-campaign --port 6390`);
# CAMPAIGN_<SETTING> variables set the other campaign.* settings
# (CAMPAIGN_FLUSH_INTERVAL_MS=50 sets campaign.flush-interval-ms).
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Metadata first and files last: with the vfs storage driver every step
# copies the whole file system, so the few steps after the package install
# are what a rebuild with a new module costs.
EXPOSE 6379
ENTRYPOINT ["/opt/redis-campaign/entrypoint.sh"]

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p /data /run/redis-campaign /usr/local/lib/redis/modules \
    && chown redis:redis /data /run/redis-campaign

# docker/entrypoint.sh and docker/redis.conf (and the PostgreSQL image's
# files, unused here).
COPY docker/ /opt/redis-campaign/
COPY target/release/libredis_campaign.so /usr/local/lib/redis/modules/libredis_campaign.so

USER redis
VOLUME /data
