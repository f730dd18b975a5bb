#!/bin/sh
# Regenerates the manual pages and shell completions the package ships, from the clap
# definitions compiled into the binary. tests/docs.rs fails when the files here differ from
# what the binary generates; run this after changing the command line or the version.
set -eu
cd "$(dirname "$0")/.."
lsrecd() { cargo run --locked --quiet --bin lsrecd -- "$@"; }
rm -f packaging/man/*.1
lsrecd manpage --out-dir packaging/man >/dev/null
lsrecd completions bash >packaging/completions/lsrecd.bash
lsrecd completions zsh >packaging/completions/_lsrecd
lsrecd completions fish >packaging/completions/lsrecd.fish
echo "regenerated packaging/man and packaging/completions"
