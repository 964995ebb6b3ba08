#!/usr/bin/env bash
# Swift cannot be compiled on Linux CI: compile the C header that the Swift
# bindings import (klad_ffiFFI.h) with gcc as a smoke test, and check that the
# Swift file and module map were generated.
# Argument: the bindings directory (from gen-bindings.sh).
set -euo pipefail
OUT="$1"
SWIFT="$OUT/swift"
for f in klad_ffi.swift klad_ffiFFI.h klad_ffiFFI.modulemap; do
  [ -s "$SWIFT/$f" ] || { echo "missing generated Swift file $f" >&2; exit 1; }
done
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# The header uses Clang's nullability qualifiers, which gcc does not know:
# they only annotate pointers, so define them away.
NULLABILITY=(-D_Nullable= -D_Nonnull= -D_Null_unspecified=)
cat > "$TMP/smoke.c" <<'C'
#include "klad_ffiFFI.h"
/* Refer to a few symbols so that their declarations are type-checked. */
int main(void) {
    void *fns[] = {
        (void *)&uniffi_klad_ffi_fn_constructor_kladclient_open,
        (void *)&uniffi_klad_ffi_fn_method_kladclient_join,
        (void *)&uniffi_klad_ffi_fn_method_kladprocess_edit_body,
        (void *)&uniffi_klad_ffi_fn_method_kladprocess_sync_status,
    };
    return fns[0] == 0;
}
C
gcc -std=c11 -Wall -Werror -fsyntax-only "${NULLABILITY[@]}" -I "$SWIFT" "$TMP/smoke.c"
# And as C99 on its own, twice (the include guard works).
printf '#include "klad_ffiFFI.h"\n#include "klad_ffiFFI.h"\n' > "$TMP/twice.c"
gcc -std=c99 -Wall -Werror -fsyntax-only "${NULLABILITY[@]}" -I "$SWIFT" "$TMP/twice.c"
