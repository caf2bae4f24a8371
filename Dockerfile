# syntax=docker/dockerfile:1
# Builds the ch-edge-proxy binary the Helm chart (charts/ch-edge-proxy) runs.
#   docker build -t ghcr.io/example/ch-edge-proxy:0.1.0 \
#     --build-arg CH_EDGE_PROXY_COMMIT=$(git rev-parse --short HEAD) .

FROM rust:1-bookworm AS builder
WORKDIR /src
# Manifests first: Cargo.toml declares [[bench]] targets, so their files must exist too.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY build.rs ./
# No .git in the context: the commit `--version` shows comes from here, e.g.
#   docker build --build-arg CH_EDGE_PROXY_COMMIT=$(git rev-parse --short HEAD) .
ARG CH_EDGE_PROXY_COMMIT=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features k8s --bin ch-edge-proxy \
 && install -D -m 0755 target/release/ch-edge-proxy /out/ch-edge-proxy

# distroless/cc: glibc + libgcc only (rustls, no OpenSSL); ":nonroot" runs as uid/gid 65532,
# the same ids the chart's podSecurityContext sets. No shell: the chart's preStop uses the
# kubelet's `sleep` action, not an exec of /bin/sleep.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ch-edge-proxy /usr/local/bin/ch-edge-proxy
# The image's own config listens on all addresses (config/container.yaml); mount yours over
# the directory: -v "$PWD/my-config:/etc/ch-edge-proxy/config:ro".
COPY config/container.yaml /etc/ch-edge-proxy/config/ch-edge-proxy.yaml
USER 65532:65532
EXPOSE 9440 8443 9090
ENTRYPOINT ["/usr/local/bin/ch-edge-proxy"]
CMD ["run", "--config", "/etc/ch-edge-proxy/config/ch-edge-proxy.yaml"]
