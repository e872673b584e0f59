# Dev/CI container for hosts without Nix: everything `make test` needs, with
# holochain 0.6.3, hc 0.6.3 and kitsune2-bootstrap-srv 0.4.1 built from
# crates.io by scripts/install-holochain.sh (webrtc/go-pion transport).
#
#   docker build -t zerotrustml-dev .     # first build about 1 h on 2 cores (the Holochain layer)
#   docker run --rm zerotrustml-dev       # runs `make test` (everything it needs is in the image)
#   docker run --rm -it zerotrustml-dev bash
#
# Why crates.io and not Nix + Holonix (see flake.nix): this is the recipe that
# `make test` is run with on our own machines, so the container tests the same
# thing. Holonix would not save the compile either: its binary cache holds the
# default iroh builds, and tryorama 0.19 needs the go-pion (webrtc) ones,
# which Nix would build from source too. The Holochain layer depends only on
# the install script, so source edits do not rebuild it.

FROM golang:1.26-bookworm AS go
FROM node:22-bookworm-slim AS node

FROM rust:1.95-bookworm

# Go >= 1.24 builds the tx5 go-pion transport (vendored, no downloads).
COPY --from=go /usr/local/go /usr/local/go
# Node 22 (maintained LTS; tryorama needs >= 20.19).
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
      python3 python3-venv python3-dev build-essential perl make pkg-config chromium \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-unknown-unknown \
 && rustup component add clippy rustfmt

# Nothing below runs as root: a user of its own owns the sources, the caches and the Rust toolchain (cargo
# writes its registry under CARGO_HOME).
RUN useradd --create-home --uid 1000 ztml \
 && mkdir -p /src "$ZTML_CACHE" \
 && chown -R ztml:ztml /src "$ZTML_CACHE" "$CARGO_HOME" "$RUSTUP_HOME"
USER ztml
WORKDIR /src

# Each layer below depends only on the files it copies, so a source edit rebuilds only the last ones.
# 1. Holochain, hc and the bootstrap server into $ZTML_CACHE (the long step).
COPY --chown=ztml:ztml scripts/install-holochain.sh scripts/install-holochain.sh
RUN bash scripts/install-holochain.sh \
 && rm -rf "$ZTML_CACHE"/cargo-target-holochain-* "$CARGO_HOME"/registry/src

# 2. Python: the runtime, test and torch extras into .venv (make's stamps record them, so `make test` does
#    not install them again).
COPY --chown=ztml:ztml Makefile pyproject.toml ./
RUN make .venv/.deps-torch

# 3. tryorama's and the dashboard's npm modules, from their locks.
COPY --chown=ztml:ztml tryorama/package.json tryorama/package-lock.json tryorama/
RUN cd tryorama && npm ci --no-audit --no-fund && touch node_modules/.npm-ci.stamp
COPY --chown=ztml:ztml web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund && touch node_modules/.npm-ci.stamp

# 4. The repository (.dockerignore keeps host build outputs out), then the Rust extension and the hApp.
COPY --chown=ztml:ztml . .
# The stamps go last: step 4 copied their inputs again, with the same contents.
RUN find python -name '*.so' -delete \
 && touch .venv/.deps .venv/.deps-service .venv/.deps-test .venv/.deps-torch tryorama/node_modules/.npm-ci.stamp \
    web/node_modules/.npm-ci.stamp \
 && make build dashboard happ

CMD ["make", "test"]
