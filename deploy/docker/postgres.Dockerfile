# PostgreSQL 15 from Debian's packages, for the containers test provider where the official
# `postgres` image cannot be pulled. Speaks what testcontainers' PostgresContainer expects:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, password logins over TCP, and `psql` on
# the PATH for its readiness query. Build: see bai_platform.devstack.images.
ARG BASE_IMAGE=localhost/bai-base:bookworm
FROM ${BASE_IMAGE}
# Debian would create a cluster at install time; the entrypoint makes the one it serves.
RUN apt-get update \
    && apt-get install -y postgresql-common \
    && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
    && apt-get install -y postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
