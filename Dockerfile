# redis-campaign: Redis with the campaign module loaded.
#
# Build:
#   docker build -t redis-campaign .
#
# Run (the module is loaded; no database configured yet, so changes are kept
# in the journal until campaign.database-url is set):
#   docker run --rm -p 6379:6379 redis-campaign
#
# Give the PostgreSQL connection as a module argument after the module path
# (repeat the whole command line: arguments replace CMD):
#   docker run --rm -p 6379:6379 redis-campaign \
#     redis-server --appendonly yes \
#       --loadmodule /usr/local/lib/redis/modules/libredis_campaign.so \
#       database-url "host=db port=5432 dbname=app user=campaign password=secret connect_timeout=5"
#
# or set it at run time:  redis-cli CONFIG SET campaign.database-url "postgresql://..."
# or mount a redis.conf (see redis.conf.example) with
#   loadmodule /usr/local/lib/redis/modules/libredis_campaign.so
#   campaign.database-url "..."
# and run `redis-server /path/to/redis.conf`.

FROM rust:1-bookworm AS build

# build-essential compiles redismodule.c; libclang-dev is needed by bindgen.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM redis:7.2

COPY --from=build /build/target/release/libredis_campaign.so /usr/local/lib/redis/modules/libredis_campaign.so

CMD ["redis-server", "--loadmodule", "/usr/local/lib/redis/modules/libredis_campaign.so"]
