#!/bin/bash
# ab-cpu.sh A_BIN_DIR B_BIN_DIR [ROUNDS]: the daemon's CPU for the same fio jobs
# over NBD, two builds alternating on fresh data dirs (bench/RESULTS.md, "Tiles in
# the store, measured over NBD"): 1 GiB of 1 MiB writes at QD8 with a final fsync,
# the same read back, a snapshot, then 20 s of 4 KiB random writes at QD32. CPU
# from /proc/PID/stat. Needs fio and a vdiskctl in A_BIN_DIR; binds 127.0.0.1 only.
set -euo pipefail
A=${1:?A_BIN_DIR}; B=${2:?B_BIN_DIR}; ROUNDS=${3:-3}
WORK=$(mktemp -d /tmp/ab-cpu.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print ($14+$15)/100}' /proc/$1/stat; }
terse() { grep '^3;' "$1" | awk -F';' "{print \$$2}"; } # fio --output-format=terse field
one() { # label bindir
  local D=$WORK/data-$1 HTTP=127.0.0.1:$(free_port) NBDA=127.0.0.1:$(free_port)
  "$2/vdiskd" --data-dir $D --http-addr $HTTP --nbd-addr $NBDA --nbd-auth=none > $WORK/$1.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do [ -s $D/admin.password ] && curl -s http://$HTTP/api/ >/dev/null && break; sleep 0.1; done
  local ctl="$A/vdiskctl --url http://$HTTP"
  $ctl login --user admin --password-stdin < $D/admin.password >/dev/null
  local V; V=$($ctl vdi create --name-label ab --virtual-size 2G --field uuid)
  local U="nbd://$NBDA/$V" c0 c1 c2 c3 c4
  c0=$(cpu $PID)
  fio --name=sw --ioengine=nbd --uri="$U" --rw=write --bs=1M --iodepth=8 --size=1G --end_fsync=1 --output-format=terse > $WORK/sw.txt
  c1=$(cpu $PID)
  fio --name=sr --ioengine=nbd --uri="$U" --rw=read --bs=1M --iodepth=8 --size=1G --output-format=terse > $WORK/sr.txt
  c2=$(cpu $PID)
  $ctl vdi snapshot $V --field uuid > /dev/null
  c3=$(cpu $PID)
  fio --name=rw --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --iodepth=32 --size=1G --time_based --runtime=20 --output-format=terse > $WORK/rw.txt
  c4=$(cpu $PID)
  local kib iops
  kib=$(terse $WORK/rw.txt 47) iops=$(terse $WORK/rw.txt 49)
  echo "$1: seqwrite 1G: $(echo "$c1 - $c0" | bc) CPU s, $(( $(terse $WORK/sw.txt 48) / 1024 )) MiB/s;" \
    "seqread 1G: $(echo "$c2 - $c1" | bc) CPU s, $(( $(terse $WORK/sr.txt 7) / 1024 )) MiB/s;" \
    "randwrite 4k: $iops IOPS, $(echo "scale=1; ($c4 - $c3) * 1000000 / ($kib / 4)" | bc) us CPU/write"
  kill $PID; wait $PID || true; PID=
  rm -rf $D
}
for _ in $(seq $ROUNDS); do one A "$A"; one B "$B"; done
