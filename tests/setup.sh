#!/bin/sh
# The test suite's set-up, run by `deno task test` before the tests (and so by .ci/run, which runs
# that task): the suite needs Mesa's software Vulkan driver (lavapipe, Debian's mesa-vulkan-drivers)
# for WebGPU without a GPU, and Debian's chromium for the browser tests (tests/web). Whatever is
# missing is installed with apt-get when this runs as root; otherwise it stops at once with one line
# naming the command that installs it. (train.ts itself needs neither: wgpu's GL backend on llvmpipe
# runs it too.)
missing="mesa-vulkan-drivers"
for icd in /usr/share/vulkan/icd.d/lvp_icd*.json; do [ -e "$icd" ] && missing=""; done
if [ -n "${CHROMIUM:-}" ]; then
  if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
    echo "error: CHROMIUM=$CHROMIUM is not a program; unset it to use Debian's chromium (apt-get install -y chromium)"
    exit 1
  fi
elif ! command -v chromium >/dev/null 2>&1; then
  missing="${missing:+$missing }chromium"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log=/tmp/tinygpt-test-setup.log
  echo "installing $missing for the tests (apt-get; log in $log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >"$log" 2>&1; then
    echo "error: apt-get install $missing failed (see $log)"
    exit 1
  fi
  exit 0
fi
echo "error: the tests need $missing: install with: sudo apt-get install -y $missing"
exit 1
