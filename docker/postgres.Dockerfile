# PostgreSQL 15 (Debian bookworm's) for docker-compose.yml, built from the
# same Debian base as the module's image: where no postgres image can be
# pulled (the machines this project is tested on), BASE is the local image
# docker/test.sh makes with debootstrap; elsewhere debian:bookworm-slim.
#
# Environment: POSTGRES_PASSWORD (required; the password of user postgres
# over TCP), POSTGRES_DB (created at first start, default campaign),
# POSTGRES_PORT (default 5432). Data in /var/lib/postgresql/data.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Metadata before the package install (with the vfs storage driver each step
# after it copies the whole file system).
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin
EXPOSE 5432
ENTRYPOINT ["/opt/redis-campaign/postgres-entrypoint.sh"]

# No cluster from the package (the entrypoint makes one in the volume), no
# service started during the build.
COPY docker/postgres-entrypoint.sh /opt/redis-campaign/postgres-entrypoint.sh
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main-cluster.conf \
    && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p "$PGDATA" /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

USER postgres
VOLUME /var/lib/postgresql/data
