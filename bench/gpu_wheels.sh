#!/usr/bin/env bash
# The wheels the GPU check (python -m bench.gpu_check) needs on a GPU machine whose python3
# (3.12) has torch, numpy, scipy, scikit-image, pandas, pyyaml, rich, psutil, filelock,
# nvidia-ml-py ... but no package registry: what is missing is downloaded here into .whl/
# (gitignored) for CPython 3.12 on manylinux x86_64, without dependencies (each needed one is
# named below), and the total is checked against the 64 MiB that may travel with the working
# tree.
#
#   bash bench/gpu_wheels.sh [base|all]      (make gpu-wheels; default all)
#
# base: foldwatch's own needs (monai, nibabel, pydantic, textual ...), about 10 MiB.
# all:  base + nnU-Net v2 2.8.1 for the side-by-side step, with what it imports at run time
#       (not imagecodecs, graphviz, future, unittest2, timm: never imported by the commands
#       foldwatch runs). SimpleITK's wheel (53 MB, one shared library) and blosc2's are
#       recompressed with LZMA (a zip method pip reads; the files and RECORD are unchanged),
#       which brings SimpleITK to about 30 MB and everything to about 50 MiB.
# Versions are those `make venv` installs here (the test suite's).
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-all}
DEST=${WHEEL_DIR:-.whl}
PY=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024))

BASE=(monai==1.6.1 nibabel==5.4.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
      typing-inspection==0.4.5 typing-extensions==4.16.0 rich==15.0.0 textual==8.2.8
      textual-plotext==1.0.1 plotext==5.3.2 platformdirs==4.14.9 mdit-py-plugins==0.7.0)
NNUNET=(nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 batchgenerators==0.25.5
        batchgeneratorsv2==0.3.6 simpleitk==2.5.7 blosc2==4.15.0 ndindex==1.10.1
        connected-components-3d==4.1.1 yacs==0.1.8)
SDIST_ONLY=(acvl-utils==0.2.6)        # published as a source archive only: built here (pure Python)

case "$SET" in
  base) WANT=("${BASE[@]}"); BUILD=() ;;
  all) WANT=("${BASE[@]}" "${NNUNET[@]}"); BUILD=("${SDIST_ONLY[@]}") ;;
  *) echo "usage: $0 [base|all]" >&2; exit 2 ;;
esac

mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WANT[@]}"
if ((${#BUILD[@]})); then
  "$PY" -m pip wheel -q --no-deps -w "$DEST" "${BUILD[@]}"
fi

# Recompress the big ones with LZMA (once: a recompressed wheel is marked by its first entry).
"$PY" - "$DEST" <<'EOF'
import copy, os, sys, zipfile
from pathlib import Path
for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    if whl.stat().st_size < 4 * 2**20:
        continue
    with zipfile.ZipFile(whl) as z:
        if all(i.compress_type == zipfile.ZIP_LZMA for i in z.infolist()):
            continue
        before = whl.stat().st_size
        tmp = whl.with_name(whl.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as out:
            for info in z.infolist():
                new = copy.copy(info)
                new.compress_type = zipfile.ZIP_LZMA
                out.writestr(new, z.read(info))
    os.replace(tmp, whl)
    print(f"{whl.name}: {before / 2**20:.1f} -> {whl.stat().st_size / 2**20:.1f} MiB (LZMA)")
EOF

# Two versions of one package stop the whole install there: say so.
"$PY" - "$DEST" <<'EOF'
import re, sys
from collections import defaultdict
from pathlib import Path
seen = defaultdict(list)
for whl in Path(sys.argv[1]).glob("*.whl"):
    seen[re.sub(r"[-_.]+", "-", whl.name.split("-")[0]).lower()].append(whl.name)
dups = {k: v for k, v in seen.items() if len(v) > 1}
for k, v in dups.items():
    print(f"two versions of {k} in {sys.argv[1]}: {', '.join(v)}: remove the stale one", file=sys.stderr)
sys.exit(1 if dups else 0)
EOF

wheels=$(find "$DEST" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
ls -l "$DEST"/*.whl | awk '{printf "%8.1f MiB  %s\n", $5 / 1048576, $9}'
awk -v w="$wheels" -v t="$tree" -v l="$LIMIT" 'BEGIN {
  printf "wheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the %.0f MiB a device call may carry\n",
         w / 1048576, t / 1048576, (w + t) / 1048576, l / 1048576
  exit (w + t > l) }' || { echo "too large for one call: use 'base' and run the nnunet step separately" >&2; exit 1; }
