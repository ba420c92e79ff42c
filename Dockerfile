# roadie as one static file in an otherwise empty image. Build it, then copy it into any image:
#
#   docker build -t roadie .
#
#   # your app's Dockerfile
#   COPY --from=roadie /roadie /usr/local/bin/roadie
#   ENTRYPOINT ["roadie"]
#   CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0"]
#
# The build stage runs scripts/build-static.sh, the same command the test suite runs
# (tests/blackbox/shipping.rs), so this file cannot drift from a build that is checked.
# glibc is linked statically, so the binary runs on scratch, distroless, alpine (musl) and
# slim images alike; the toolchain image is Debian bookworm, as our own machines.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-static.sh --out /roadie

FROM scratch
COPY --from=build /roadie /roadie
ENTRYPOINT ["/roadie"]
