# maas-flow container: build with the Rust toolchain, run on a small Debian base.
#   docker build -t maas-flow .
#   docker run -d --name maas-flow \
#     -v $PWD/config:/etc/maas-flow:ro \
#     -v /path/to/maas_api_key:/secrets/maas_api_key:ro \
#     -e MAAS_FLOW_MAAS__URL=http://maas:5240/MAAS \
#     -p 127.0.0.1:9090:9090 maas-flow

FROM rust:1-bookworm AS build
# protoc compiles etcd-client's gRPC definitions (leader election, [ha]).
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin maas-flow --bin maas-sim

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/maas-flow --create-home maas-flow
COPY --from=build /src/target/release/maas-flow /src/target/release/maas-sim /usr/local/bin/
COPY config/maas-flow.toml /etc/maas-flow/maas-flow.toml
USER maas-flow
WORKDIR /var/lib/maas-flow
# Inside a container the status listener must bind beyond loopback to be reachable;
# publish it only on the host's loopback (-p 127.0.0.1:9090:9090).
ENV MAAS_FLOW_CONFIG=/etc/maas-flow/maas-flow.toml \
    MAAS_FLOW_HTTP__LISTEN=0.0.0.0:9090 \
    MAAS_FLOW_MAAS__API_KEY_FILE=/secrets/maas_api_key
EXPOSE 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/maas-flow"]
CMD ["run"]
