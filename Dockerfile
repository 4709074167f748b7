# syntax=docker/dockerfile:1
# Strata server image: build with the Rust toolchain, run on a slim Debian
# as a non-root user with the data in the /data volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY proto proto
COPY server server
COPY client client
COPY bench bench
# A workspace member (the power-cut tier's test filesystem): cargo needs its
# manifest to resolve the workspace, though the image does not build it.
COPY tests/forgetfs tests/forgetfs
RUN cargo build --release --locked -p strata-server --bin strata \
 && cp target/release/strata /usr/local/bin/strata

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 strata \
 && useradd --system --uid 10001 --gid strata --home-dir /data --shell /usr/sbin/nologin strata \
 && mkdir -p /data && chown strata:strata /data
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
ENV STRATA_DATA_DIR=/data \
    STRATA_LISTEN=0.0.0.0:2113 \
    STRATA_METRICS_LISTEN=0.0.0.0:9464 \
    STRATA_LOG=info
VOLUME ["/data"]
EXPOSE 2113 9464
USER strata:strata
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["strata", "health", "--url", "http://127.0.0.1:2113"]
ENTRYPOINT ["strata"]
CMD ["serve"]
