#!/usr/bin/env bash
# bench/gpu.sh — the one-command GPU check, for a machine with a real GPU and no network.
#
#   bench/gpu.sh --pack              on a machine with deno: copy $(which deno) and the Vulkan loader
#                                    (libvulkan.so.1) into bench/vendor/ (git-ignored), xz-compressed
#   bench/gpu.sh [--quick] [--out DIR]
#                                    on the GPU machine: unpack them, then run `bench.ts` for both
#                                    kernel families (--kernels gpu, --kernels cpu) at both configs
#                                    (lecture, nanogpt-char), plus PyTorch eager CUDA for the same two
#                                    configs where `python3 -c "import torch"` sees a GPU; the gpu runs
#                                    also print the matmul tuning table (every variant's GFLOP/s per
#                                    shape class, and the winner) and tune with --tune on, cached in
#                                    DIR/tune-cache; everything as JSON in DIR (default
#                                    bench/out/gpu-<time>), and a summary table.
#
# Every run is bounded (steps, a time budget inside the bench, and `timeout` around it), so the whole
# check finishes in under 8 minutes (4 runs x RUN_TIMEOUT s + unpacking). --quick: a few steps each
# (nanogpt-char at batch 1), to test the script itself on a CPU adapter. Nothing is downloaded: the
# bench imports only local files and node: built-ins, deno runs with --no-config --no-lock
# --cached-only and an empty DENO_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/bench/vendor"

# ------------------------------------------------------------------------------------------ --pack
if [[ "${1:-}" == "--pack" ]]; then
  deno_bin="$(command -v deno)" || { echo "error: --pack needs deno on PATH" >&2; exit 2; }
  command -v xz >/dev/null || { echo "error: --pack needs xz (apt-get install xz-utils)" >&2; exit 2; }
  mkdir -p "$VENDOR"
  echo "packing $deno_bin ($("$deno_bin" --version | head -1)) into $VENDOR/deno.xz ..."
  xz -T0 -6 -c "$deno_bin" >"$VENDOR/deno.xz.tmp" && mv "$VENDOR/deno.xz.tmp" "$VENDOR/deno.xz"
  loader="$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 /{print $NF; exit}')"
  if [[ -n "$loader" ]]; then
    xz -T0 -6 -c "$(readlink -f "$loader")" >"$VENDOR/libvulkan.so.1.xz"
    echo "packed the Vulkan loader $loader"
  else
    echo "note: no libvulkan.so.1 on this machine; the GPU machine must have its own Vulkan loader"
  fi
  {
    echo "deno: $("$deno_bin" --version | head -1)"
    echo "packed: $(date -u +%FT%TZ) on $(uname -srm)"
    (cd "$VENDOR" && sha256sum ./*.xz)
  } >"$VENDOR/MANIFEST"
  ls -l "$VENDOR"
  exit 0
fi

# ------------------------------------------------------------------------------------------ run
QUICK=0
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$ROOT/bench/out/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tinygpt-gpu.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

unxz_to() { # unxz_to FILE.xz DEST: xz, or Python's lzma where xz is missing
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}

# Deno: the packed binary, else one on PATH.
if [[ -f "$VENDOR/deno.xz" ]]; then
  mkdir -p "$WORK/bin"
  unxz_to "$VENDOR/deno.xz" "$WORK/bin/deno"
  chmod +x "$WORK/bin/deno"
  export PATH="$WORK/bin:$PATH"
elif ! command -v deno >/dev/null; then
  echo "error: no deno: run bench/gpu.sh --pack on a machine with deno first (it fills bench/vendor/)" >&2
  exit 2
fi
# The Vulkan loader: the system's when it has one, else the packed one.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [[ -f "$VENDOR/libvulkan.so.1.xz" ]]; then
  mkdir -p "$WORK/lib"
  unxz_to "$VENDOR/libvulkan.so.1.xz" "$WORK/lib/libvulkan.so.1"
  export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "using the packed Vulkan loader"
fi
# NVIDIA's Vulkan driver is libGLX_nvidia.so.0; containers often ship it without its ICD manifest.
if [[ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]] &&
  ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* /usr/local/share/vulkan/icd.d/*nvidia* \
    >/dev/null 2>&1; then
  nv="$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 /{print $NF; exit}')"
  if [[ -n "$nv" ]]; then
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$nv" \
      >"$WORK/nvidia_icd.json"
    export VK_ICD_FILENAMES="$WORK/nvidia_icd.json" VK_DRIVER_FILES="$WORK/nvidia_icd.json"
    echo "no NVIDIA Vulkan ICD manifest installed: wrote one for $nv"
  fi
fi
export DENO_DIR="$WORK/deno_dir" DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1
# The matmul tuner's cache (lib/tune_cache.ts), inside the output folder the bench may write.
export TINYGPT_CACHE_DIR="$OUT/tune-cache"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK}"

TORCH=0
if python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then TORCH=1; fi

# Bounds per run: steps, warm-up and profiled steps, the time budget (seconds of timed and back-to-back
# steps in the bench, and of PyTorch's timed steps), and the hard timeout around the whole process.
if ((QUICK)); then
  LECTURE=(--steps 2 --warmup 1 --profile-steps 1 --time-budget 20)
  NANO=(--batch-size 1 --steps 1 --warmup 1 --profile-steps 0 --time-budget 20)
  RUN_TIMEOUT=300
else
  LECTURE=(--steps 20 --warmup 3 --profile-steps 3 --time-budget 25)
  NANO=(--steps 10 --warmup 2 --profile-steps 1 --time-budget 30)
  RUN_TIMEOUT=105
fi

{
  echo "tinygpt-webgpu bench/gpu.sh $( ((QUICK)) && echo --quick)"
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "deno: $(deno --version | head -1)"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
  echo "torch cuda: $( ((TORCH)) && python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' || echo no)"
} | tee "$OUT/meta.txt"

for family in gpu cpu; do
  for config in lecture nanogpt-char; do
    if [[ $config == lecture ]]; then bounds=("${LECTURE[@]}"); else bounds=("${NANO[@]}"); fi
    torch=(--no-torch)
    if ((TORCH)) && [[ $family == gpu ]]; then torch=(--torch-device cuda); fi
    # The tuning table times gpu-family kernels on the adapter: once per config, with the gpu runs.
    tuning=()
    if [[ $family == cpu ]] || ((QUICK)); then tuning=(--no-tuning); fi
    name="$config-$family"
    echo "== $name (at most ${RUN_TIMEOUT}s; log $OUT/$name.log)"
    rc=0
    timeout -k 5 "$RUN_TIMEOUT" deno run --no-config --no-lock --cached-only --quiet \
      --allow-read="$ROOT,$OUT" --allow-write="$OUT" --allow-env --allow-run=python3,/usr/bin/python3 \
      "$ROOT/bench.ts" --kernels "$family" --config "$config" "${bounds[@]}" --mm-kernels "" "${torch[@]}" "${tuning[@]}" \
      --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || rc=$?
    if ((rc == 124 || rc == 137)); then echo "   timed out after ${RUN_TIMEOUT}s" | tee -a "$OUT/$name.log"
    elif ((rc != 0)); then echo "   failed (exit $rc): $(tail -1 "$OUT/$name.log")"
    else grep -E '^(adapter:|step |work )' "$OUT/$name.log" | sed 's/^/   /' || true
    fi
  done
done

deno run --no-config --no-lock --cached-only --quiet --allow-read="$OUT" --allow-write="$OUT" \
  "$ROOT/bench/gpu_summary.ts" "$OUT" | tee "$OUT/summary.txt"
echo "total $((SECONDS - START)) s; results in $OUT"
