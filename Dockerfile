# Multi-stage build: compile with the Rust toolchain, ship only the binary on a distroless,
# non-root base (glibc + libgcc; TLS is rustls, so no OpenSSL is needed).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin evaluation-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/evaluation-proxy /usr/local/bin/evaluation-proxy
COPY --from=build /src/examples /etc/evaluation-proxy/examples
USER nonroot
EXPOSE 3546 9090
ENV PROXY_CONFIG_FILE_PATH=/etc/evaluation-proxy-config.yaml
# The image has no shell or curl: the binary probes itself. Override --url if you change the port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/evaluation-proxy", "healthcheck", "--url", "http://127.0.0.1:3546/readyz"]
ENTRYPOINT ["/usr/local/bin/evaluation-proxy"]
