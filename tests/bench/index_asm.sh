#!/usr/bin/env bash
# Shows that the index's distance code is vectorised.
# 1. The portable 4-bit dot product (src/index/quantized.rs, `dot4`), compiled on its own
#    (rustc -O, as in the release build, no target-cpu flags) for x86_64 (SSE2 baseline)
#    and aarch64 (NEON baseline; needs `rustup target add aarch64-unknown-linux-gnu`):
#    counts the SIMD multiply-add / widening instructions in it.
# 2. The x86_64 scan kernels (src/index/simd/: AVX2, AVX-512 VNNI on ymm and on zmm) in
#    the release binary, if built: counts their multiply-add, reduction and compare
#    instructions.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# pub(crate) items are dropped from a lone library's code: make them pub for the listing;
# the MAX_DIM test reference does not exist there.
sed -e 's/pub(crate) fn/pub fn/' -e 's/pub(crate) const/pub const/' \
    -e 's/crate::index::MAX_DIM/65_535/' -e 's/#\[inline(always)\]//' src/index/quantized.rs >"$out/quantized.rs"
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    if ! rustc -O -C codegen-units=1 --crate-type lib --crate-name quantized --target "$target" \
        --emit asm -o "$out/$target.s" "$out/quantized.rs" 2>"$out/err"; then
        echo "$target: cannot compile ($(head -1 "$out/err"))"
        continue
    fi
    # The nibble dot product's symbol (mangled name contains 4dot4).
    awk '/^_ZN9quantized4dot417/,/^\.Lfunc_end/' "$out/$target.s" >"$out/dot.s"
    echo "== $target: dot4() has $(wc -l <"$out/dot.s") lines; SIMD instructions in it:"
    grep -oE '\b(pmaddwd|pmullw|paddd|pand|psrlw|punpck[lh]bw|smlal2?|smull2?|sadalp|saddw2?|sxtl2?|ushll2?|mla|addv|and)\b' "$out/dot.s" \
        | sort | uniq -c | sort -rn
done
bin=target/release/facegate
if [ -x "$bin" ] && command -v objdump >/dev/null; then
    objdump -d --no-show-raw-insn "$bin" >"$out/bin.s"
    for kernel in avx2 vnni avx512; do
        echo "== $bin: the $kernel scan kernel (src/index/simd/$kernel.rs), its vector instructions:"
        # The module's kernel entry point with its scans inlined (mangled name
        # contains <len>kernel then 13coarse_uppers).
        awk "/<_ZN8facegate5index4simd${#kernel}${kernel}13coarse_uppers/,/^\$/" "$out/bin.s" |
            grep -oE '\b(vpdpbusd|vpmaddubsw|vpmaddwd|vphaddd|vpunpck[lh]dq|vpunpck[lh]qdq|vshufi32x4|vpandd?|vpsrlw|vcmpgt_oqps|vcmpps)\b' |
            sort | uniq -c | sort -rn
    done
fi
