# syntax=docker/dockerfile:1
# Strata server image: build with the Rust toolchain, run on a slim Debian
# as a non-root user with the data in the /data volume.
#
# The server listens on 0.0.0.0, so it refuses to start without TLS and
# authentication. The secure setup mounts a certificate and its key and
# gives the first admin's password (see README "Security"):
#   docker run -d -p 2113:2113 -v strata-data:/data -v "$PWD/certs:/certs:ro" \
#     -e STRATA_TLS_CERT=/certs/server.crt -e STRATA_TLS_KEY=/certs/server.key \
#     -e STRATA_ADMIN_PASSWORD='a long secret' \
#     -e STRATA_URL=https://localhost:2113 -e STRATA_CA=/certs/ca.crt strata
# (STRATA_URL and STRATA_CA are for the health check inside the container.)
# A throwaway try without either, which anyone reaching the port may use:
#   docker run --rm -p 2113:2113 strata serve --insecure

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
  CMD ["strata", "health"]
ENTRYPOINT ["strata"]
CMD ["serve"]
