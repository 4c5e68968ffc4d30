#!/usr/bin/env bash
# Shows that the index's distance code is vectorised: compiles src/index/quantized.rs on
# its own (rustc -O, as in the release build, no target-cpu flags) for x86_64 (SSE2
# baseline) and aarch64 (NEON baseline; needs `rustup target add
# aarch64-unknown-linux-gnu`) and counts the SIMD multiply-add instructions in the
# integer dot product's loop: pmaddwd (x86_64), smlal/smlal2/sadalp/saddw (aarch64).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# pub(crate) items are dropped from a lone library's code: make them pub for the listing.
sed 's/pub(crate) fn/pub fn/' src/index/quantized.rs >"$out/quantized.rs"
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    if ! rustc -O --crate-type lib --crate-name quantized --target "$target" \
        --emit asm -o "$out/$target.s" "$out/quantized.rs" 2>"$out/err"; then
        echo "$target: cannot compile ($(head -1 "$out/err"))"
        continue
    fi
    # The integer dot product's symbol (mangled name contains 3dot).
    awk '/^_ZN9quantized3dot17/,/^\.Lfunc_end/' "$out/$target.s" >"$out/dot.s"
    echo "== $target: dot() has $(wc -l <"$out/dot.s") lines; SIMD instructions in it:"
    grep -oE '\b(pmaddwd|pmullw|paddd|punpck[lh]bw|psraw|smlal2?|smull2?|sadalp|saddw2?|sxtl2?|mla|addv)\b' "$out/dot.s" \
        | sort | uniq -c | sort -rn
done
