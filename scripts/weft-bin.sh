# Sourced by the benchmark scripts: sets $weft to the binary to measure. BIN=path/to/weft
# measures that binary (an A/B of two builds); otherwise a release build of this checkout
# (in $CARGO_TARGET_DIR, which the caller sets).
if [ -n "${BIN:-}" ]; then
    weft="$BIN"
else
    cargo build --release --quiet -p weft-cli
    weft="$CARGO_TARGET_DIR/release/weft"
fi
