# hookctl's container image: the static binary on a small Debian with
# python3 (for the Python hook types), run as a non-root user.
#   docker build -t hookctl .
#   docker run --rm hookctl version
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hookctl ./cmd/hookctl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookctl --create-home hookctl
COPY --from=build /out/hookctl /usr/local/bin/hookctl
USER 10001:10001
ENV HOOKCTL_DATA_DIR=/var/lib/hookctl
VOLUME ["/var/lib/hookctl"]
ENTRYPOINT ["/usr/local/bin/hookctl"]
CMD ["serve"]
