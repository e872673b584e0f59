{
  # Dev shell for Nix hosts: `nix develop`, then the usual `make test`.
  #
  # Holonix main-0.6 pins Holochain 0.6.3, kitsune2 0.4.1, Lair 0.6.3 and
  # Rust 1.94 with the wasm32-unknown-unknown target. Its cached holochain, hc
  # and bootstrap server are the default (iroh) builds, but tryorama 0.19 asks
  # `hc sandbox` for a webrtc network and a kitsune2-bootstrap-srv with the sbd
  # signal relay. So, like scripts/install-holochain.sh, this shell builds
  # holochain and hc with the tx5 go-pion transport and the bootstrap server
  # with sbd. Those three are not in the Holochain binary cache: the first
  # `nix develop` compiles them (about an hour on 2 cores).
  description = "ZeroTrustML: Holonix 0.6 dev shell (Holochain 0.6.3, webrtc transport)";

  # Holonix pinned to a commit of its main-0.6 branch (2026-07-22; Holochain 0.6.3, kitsune2 0.4.1, Lair
  # 0.6.3), so the versions below cannot move under the shell hook. A flake.lock is not committed: it could not
  # be made or checked where this project is built (no Nix there); `nix develop` writes it on first use, and
  # the pinned commit fixes every input it records (Holonix's own lock pins the rest).
  inputs = {
    holonix.url = "github:holochain/holonix/21d3a9f3eb1d7a533fc816ab53825f3ef35b0007";
    nixpkgs.follows = "holonix/nixpkgs";
    flake-parts.follows = "holonix/flake-parts";
  };

  outputs = inputs@{ flake-parts, ... }: flake-parts.lib.mkFlake { inherit inputs; } {
    systems = builtins.attrNames inputs.holonix.devShells;

    perSystem = { inputs', pkgs, ... }:
      let
        hn = inputs'.holonix.packages;

        # The same feature sets as scripts/install-holochain.sh.
        holochain = hn.holochain.override {
          cargoExtraArgs = "--no-default-features --features sqlite-encrypted,schema,wasmer_sys,transport-tx5-backend-go-pion";
        };
        hc = hn.hc.override {
          cargoExtraArgs = "--no-default-features --features wasmer_sys,transport-tx5-backend-go-pion";
        };

        # Holonix's bootstrap-srv is not overridable; build the same kitsune2
        # source (Holonix's pinned input) with the sbd feature instead of iroh.
        craneLib = (inputs.holonix.inputs.crane.mkLib pkgs).overrideToolchain (_: hn.rust);
        bootstrap-srv = craneLib.buildPackage {
          pname = "kitsune2-bootstrap-srv";
          src = craneLib.cleanCargoSource inputs.holonix.inputs.kitsune2;
          cargoExtraArgs = "-p kitsune2_bootstrap_srv --no-default-features --features sbd";
          nativeBuildInputs = [ pkgs.perl pkgs.cmake ];
          buildInputs = [ pkgs.openssl ];
          doCheck = false;
        };

        # scripts/build-happ.sh and `make wasm-check` ask rustup whether the
        # wasm32 target is installed. The Nix toolchain has no rustup, so this
        # stand-in answers from the toolchain's own sysroot.
        rustup-shim = pkgs.writeShellScriptBin "rustup" ''
          root="$(rustc --print sysroot)/lib/rustlib"
          installed() { for d in "$root"/*/lib; do basename "$(dirname "$d")"; done; }
          case "$*" in
            "target list --installed") installed ;;
            "target add "*) installed | grep -qx "$3" || { echo "rustup shim: $3 is not in the Nix toolchain" >&2; exit 1; } ;;
            *) echo "rustup shim (Nix dev shell): 'rustup $*' is not supported" >&2; exit 1 ;;
          esac
        '';
      in
      {
        formatter = pkgs.nixpkgs-fmt;

        packages = { inherit holochain hc bootstrap-srv; };

        devShells.default = pkgs.mkShell {
          packages = [
            holochain
            hc
            bootstrap-srv
            rustup-shim
          ] ++ (with hn; [
            lair-keystore
            hn-introspect
            rust # Rust 1.94 with the wasm32-unknown-unknown target, clippy, rustfmt
          ]) ++ (with pkgs; [
            nodejs_24 # tryorama tests (npm ci, vitest); Node 20 is marked insecure in current nixpkgs
            python311 # .venv for the Python package and scripts/sync-proof.py
            maturin
          ]);

          # scripts/install-holochain.sh (run by `make holochain`, which `make
          # happ` needs) returns at once when its cache holds the three
          # binaries; point that cache at the Nix builds above so nothing is
          # compiled from crates.io. HC_BIN_DIR is read by the other scripts.
          shellHook = ''
            # pip's wheels (numpy, torch, ruff) link the system libstdc++, which a Nix shell does not put on
            # the library path.
            export LD_LIBRARY_PATH="${pkgs.lib.makeLibraryPath [ pkgs.stdenv.cc.cc.lib pkgs.zlib ]}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            case "$(${holochain}/bin/holochain --version)" in
              *0.6.3*) ;;
              *) echo "flake.nix: Holonix's holochain is not 0.6.3; update the cache path below" >&2 ;;
            esac
            export ZTML_CACHE="''${XDG_CACHE_HOME:-$HOME/.cache}/zerotrustml-nix"
            export HC_BIN_DIR="$ZTML_CACHE/holochain-0.6.3-k2-0.4.1-gopion/bin"
            mkdir -p "$HC_BIN_DIR"
            ln -sfn ${holochain}/bin/holochain "$HC_BIN_DIR/holochain"
            ln -sfn ${hc}/bin/hc "$HC_BIN_DIR/hc"
            ln -sfn ${bootstrap-srv}/bin/kitsune2-bootstrap-srv "$HC_BIN_DIR/kitsune2-bootstrap-srv"
            export PS1='\[\033[1;34m\][holonix:\w]\$\[\033[0m\] '
          '';
        };
      };
  };
}
