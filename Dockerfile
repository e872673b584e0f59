# Dev/CI container for hosts without Nix: everything `make test` needs, with
# holochain 0.6.3, hc 0.6.3 and kitsune2-bootstrap-srv 0.4.1 built from
# crates.io by scripts/install-holochain.sh (webrtc/go-pion transport).
#
#   docker build -t zerotrustml-dev .     # first build about 1 h on 2 cores (the Holochain layer)
#   docker run --rm zerotrustml-dev       # runs `make test`
#   docker run --rm -it zerotrustml-dev bash
#
# Why crates.io and not Nix + Holonix (see flake.nix): this is the recipe that
# `make test` is run with on our own machines, so the container tests the same
# thing. Holonix would not save the compile either: its binary cache holds the
# default iroh builds, and tryorama 0.19 needs the go-pion (webrtc) ones,
# which Nix would build from source too. The Holochain layer depends only on
# the install script, so source edits do not rebuild it.

FROM golang:1.26-bookworm AS go
FROM node:20-bookworm-slim AS node

FROM rust:1.95-bookworm

# Go >= 1.24 builds the tx5 go-pion transport (vendored, no downloads).
COPY --from=go /usr/local/go /usr/local/go
# Node 20 (>= 20.19) for the tryorama tests.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ENV PATH=/usr/local/go/bin:$PATH \
    ZTML_CACHE=/opt/zerotrustml-cache

# Python 3.11 is bookworm's python3; build-essential, perl, make and
# pkg-config are what the Holochain build needs (docs/HOLOCHAIN.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev build-essential perl make pkg-config \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-unknown-unknown \
 && rustup component add clippy rustfmt

WORKDIR /src

# Holochain, hc and the bootstrap server into $ZTML_CACHE (the long step).
COPY scripts/install-holochain.sh scripts/install-holochain.sh
RUN bash scripts/install-holochain.sh \
 && rm -rf "$ZTML_CACHE"/cargo-target-holochain-* "$CARGO_HOME"/registry/src

# The repository, listed explicitly so that host build outputs (target/,
# .venv/, node_modules/) stay out; a new top-level directory needs a line here.
COPY Cargo.toml Cargo.lock Makefile pyproject.toml rustfmt.toml README.md ./
COPY crates crates
COPY python python
COPY tests tests
COPY benchmarks benchmarks
COPY scripts scripts
COPY zomes zomes
COPY dnas dnas
COPY workdir/happ.yaml workdir/happ.yaml
COPY docs docs
COPY results results
COPY tryorama/package.json tryorama/package-lock.json tryorama/tsconfig.json tryorama/vitest.config.ts tryorama/
COPY tryorama/src tryorama/src
# A host-built Python extension must not shadow the one `make build` makes.
RUN find python -name '*.so' -delete

CMD ["make", "test"]
