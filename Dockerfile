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
#
# The final stage from a binary you built already (scripts/build-static.sh --out DIR/roadie),
# without the toolchain image: the stage `prebuilt` is the final stage with /roadie taken from
# the build context instead of the build stage (the tests build it so, under podman):
#
#   docker build --target prebuilt -t roadie -f Dockerfile DIR

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-static.sh --out /roadie

FROM scratch AS prebuilt
COPY roadie /roadie
ENTRYPOINT ["/roadie"]

FROM scratch
COPY --from=build /roadie /roadie
ENTRYPOINT ["/roadie"]
