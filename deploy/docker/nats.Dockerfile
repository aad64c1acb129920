# NATS from Debian's packages, for the containers test provider where the official `nats`
# image cannot be pulled. Like the official image: client port 4222, monitoring 8222, and
# the arguments testcontainers' NatsContainer adds (`-js`) go to nats-server, which logs
# "Server is ready" when it serves.
ARG BASE_IMAGE=localhost/bai-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y nats-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
USER 10001:10001
EXPOSE 4222 8222
ENTRYPOINT ["nats-server", "--addr", "0.0.0.0", "--port", "4222", "--http_port", "8222", "--store_dir", "/tmp/nats"]
