# pierd (and the pier CLI) as a container image, for the single-host install
# (docker-compose.yml) and clusters. Plain Dockerfile syntax: the legacy
# builder of Docker 20.10 builds it, and so does BuildKit.
#
#   docker build -t pier/pierd .
#
# The base images are build arguments so that the image can be made where
# nothing can be pulled (the compose smoke test passes images it made):
#   BUILD_IMAGE  has Go (1.26+); its user does not matter
#   RUN_IMAGE    Debian-like; git and ca-certificates are installed with apt
#                only if missing, so an image that has them needs no network
#   GOFLAGS      e.g. -mod=vendor, to build from a vendor/ directory offline
ARG BUILD_IMAGE=golang:1.26-bookworm
ARG RUN_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
# The build stage is thrown away: it runs as root whatever the base image's
# user is, so that it can write /src and /out.
USER root
ARG GOFLAGS=
ENV CGO_ENABLED=0 GOFLAGS=${GOFLAGS}
WORKDIR /src
# Modules first, so that a source change does not download them again.
# With -mod=vendor they come with the sources instead.
COPY go.mod go.sum ./
RUN case " $GOFLAGS " in *" -mod=vendor "*) ;; *) go mod download ;; esac
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/pierd ./cmd/pierd \
 && go build -trimpath -ldflags="-s -w" -o /out/pier ./cmd/pier

FROM ${RUN_IMAGE}
USER root
# pierd runs git-receive-pack for pushes and git to check out pushed trees;
# ca-certificates for registries and clusters with public certificates.
RUN missing=; \
    command -v git >/dev/null 2>&1 || missing="$missing git"; \
    [ -s /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"; \
    if [ -n "$missing" ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing \
        && rm -rf /var/lib/apt/lists/*; \
    fi; \
    git --version
# pierd never runs as root: it gets the Docker socket through its group
# (group_add in docker-compose.yml), and keeps its state (the builder's SSH
# host key and git repositories, the bootstrap token) in /var/lib/pier.
RUN groupadd --system --gid 10001 pier \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/pier --create-home --shell /usr/sbin/nologin pier \
 && mkdir -p /var/lib/pier \
 && chown 10001:10001 /var/lib/pier \
 && chmod 0700 /var/lib/pier
COPY --from=build /out/pierd /out/pier /usr/local/bin/
ENV PIER_DATA_DIR=/var/lib/pier HOME=/home/pier
WORKDIR /var/lib/pier
USER 10001:10001
EXPOSE 8080 2222
ENTRYPOINT ["pierd"]
CMD ["all"]
