# maas-flow container: build with the Rust toolchain, run on a small Debian base.
#
#   docker build -t maas-flow .
#   docker run -d --name maas-flow --init --stop-timeout 45 \
#     -v "$PWD/config:/etc/maas-flow:ro" \
#     -v /path/to/maas_api_key:/secrets/maas_api_key:ro \
#     -v maas-flow-state:/var/lib/maas-flow \
#     -e MAAS_FLOW_MAAS__URL=http://maas:5240/MAAS \
#     -p 127.0.0.1:9090:9090 maas-flow
#
# - PID 1 is tini: maas-flow spawns provisioning scripts, and tini reaps any orphan
#   they leave and forwards SIGTERM (`docker run --init` is not needed, but harmless).
# - --stop-timeout must exceed shutdown_grace (30s default): docker's default of 10s
#   SIGKILLs maas-flow while it waits for operations in flight.
# - The key file must be readable by uid 10001 (the image's user), e.g.
#   `chown 10001 maas_api_key && chmod 400 maas_api_key` on the host.
# - /var/lib/maas-flow is a volume and the state_dir (MAAS_FLOW_STATE_DIR): the
#   provisioning journal survives a new container, so a success is never run again.

FROM rust:1-bookworm AS build
# protoc compiles etcd-client's gRPC definitions (leader election, [ha]).
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin maas-flow --bin maas-sim \
    && mkdir -p /out/man /out/completions \
    && target/release/maas-flow man > /out/man/maas-flow.1 \
    && target/release/maas-flow completions bash > /out/completions/maas-flow

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/maas-flow \
       --create-home --shell /usr/sbin/nologin maas-flow \
    && chmod 700 /var/lib/maas-flow
COPY --from=build /src/target/release/maas-flow /src/target/release/maas-sim /usr/local/bin/
COPY --from=build /out/man/maas-flow.1 /usr/local/share/man/man1/maas-flow.1
COPY --from=build /out/completions/maas-flow /usr/share/bash-completion/completions/maas-flow
COPY config/maas-flow.toml /etc/maas-flow/maas-flow.toml
USER 10001:10001
WORKDIR /var/lib/maas-flow
VOLUME ["/var/lib/maas-flow"]
# Inside a container the status listener must bind beyond loopback to be reachable;
# publish it only on the host's loopback (-p 127.0.0.1:9090:9090).
ENV MAAS_FLOW_CONFIG=/etc/maas-flow/maas-flow.toml \
    MAAS_FLOW_HTTP__LISTEN=0.0.0.0:9090 \
    MAAS_FLOW_MAAS__API_KEY_FILE=/secrets/maas_api_key \
    MAAS_FLOW_STATE_DIR=/var/lib/maas-flow
EXPOSE 9090
# No curl in the image: maas-flow asks its own listener, wherever http.listen puts it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/maas-flow", "status", "--health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/maas-flow"]
CMD ["run"]
