#!/bin/bash
# The fresh-clone stress check (issue 11): clone this repository, then run `.ci/run` (the README's test
# command) N times in a row while a busy loop keeps one core occupied; prints each run's closing line
# and the number of failed runs. Usage: tools/fresh_clone_check.sh [N=5]
N=${1:-5}
set -u
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
rm -rf /tmp/fresh && git clone -q "$src" /tmp/fresh && cd /tmp/fresh || exit 1
( while :; do :; done ) & HOG=$!
trap "kill $HOG" EXIT
fails=0
for i in $(seq $N); do
  start=$(date +%s)
  CI=true bash .ci/run > /tmp/fresh_run_$i.log 2>&1; rc=$?
  line=$(grep -E "passed|failed" /tmp/fresh_run_$i.log | tail -1)
  echo "run $i: exit $rc, $(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg): $line"
  [ $rc -ne 0 ] && fails=$((fails+1))
done
echo "failed runs: $fails of $N"
