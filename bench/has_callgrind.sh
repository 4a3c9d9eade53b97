#!/bin/sh
# Instruction counts of CAMPAIGN.HAS vs SISMEMBER inside Redis's call(),
# under callgrind: loads N members per dataset, then per command zeroes
# the counters, runs R lookups (redis-benchmark -P 16 -c 1) and dumps.
# usage: has_callgrind.sh module.so outdir [members] [requests]
set -eu
SO=$1; OUT=$2; N=${3:-200000}; R=${4:-20000}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
cd "$OUT"
valgrind --tool=callgrind --collect-atstart=no --toggle-collect=call \
  --callgrind-out-file="$OUT/callgrind.out" \
  redis-server --port "$PORT" --save "" --appendonly no --dir "$OUT" \
  --loadmodule "$SO" flush-interval-ms 3600000 flush-batch-size 1000000 \
  > "$OUT/server.log" 2>&1 &
VG=$!
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.5; done
python3 - "$PORT" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
def enc(*a):
    out = [b"*%d\r\n" % len(a)]
    for x in a:
        x = x.encode() if isinstance(x, str) else x
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)
import random
rng = random.Random(7); picks = rng.sample(range(2_000_000), n)
sets = {"numeric": ["1%012d" % k for k in picks], "user": ["user:1%012d" % k for k in picks],
        "uuid": ["00000000-0000-4000-8000-%012d" % k for k in picks], "strings": ["user:%012d" % k for k in picks]}
for name, members in sets.items():
    for cmd, key in (("CAMPAIGN.ADD", "has:" + name), ("SADD", "has:%s:native" % name)):
        for i in range(0, n, 10000):
            s.sendall(enc(cmd, key, *members[i:i + 10000])); f.readline()
PY
for pair in "numeric 1__rand_int__" "user user:1__rand_int__" "uuid 00000000-0000-4000-8000-__rand_int__" "strings user:__rand_int__"; do
  set -- $pair
  for side in module native; do
    callgrind_control -z "$VG" >/dev/null
    if [ $side = module ]; then cmd="CAMPAIGN.HAS has:$1 $2"; else cmd="SISMEMBER has:$1:native $2"; fi
    redis-benchmark -p "$PORT" -c 1 -P 16 -n "$R" -r 2000000 $cmd >/dev/null
    callgrind_control -d "$1-$side" "$VG" >/dev/null
  done
done
redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
wait $VG || true
for f in "$OUT"/callgrind.out.*; do
  printf '%s ' "$(basename $f)"
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null | awk -v r="$R" '/PROGRAM TOTALS/ {gsub(",","",$1); printf "%.0f Ir/call\n", $1/r}'
done
