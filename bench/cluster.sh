# Sourced by the bench scripts: a 3-node shoal cluster on loopback.
#   shoal_cluster NAME WORK BIN PORT [flags...]
#       starts (or restarts, on the same data) nodes on PORT+1..3 (gRPC),
#       PORT+11..13 (HTTP), PORT+21..23 (SQL) and PORT+31..33 (peers; each for a
#       build that has it), data and
#       logs in WORK/NAME-i; returns once the cluster takes writes. Ranges do not
#       split by load (`--split-qps 0`, unless the flags say otherwise): a bench
#       chooses its range count (shoal-bench --split-into), and a split mid-run
#       would change what it measures; nor do idle ranges merge back
#       (`--merge-after 0`). Sets NAME_eps
#       (comma-separated endpoints), NAME_sql (the SQL addresses) and NAME_pids.
#   shoal_stop NAME       SIGTERM to the nodes, then waits for them.
#   shoal_cpu NAME SECS   each node's CPU over SECS seconds, in % of one core.
#   bench_run NAME CPU_FILE SECS BIN [shoal-bench args...]
#       runs BIN's shoal-bench for a run of SECS seconds, writing NAME's nodes' CPU
#       over it (shoal_cpu) to CPU_FILE.
#   shoal_containers NAME K MODE [docker flags...]
#       the same as containers of $image (MODE `host`: the host network, ports from
#       27600 + 100 * K; otherwise the Docker network $pods_net, addresses
#       $pods_subnet.(10 * K + i)), data in $work/NAME-i; sets NAME_eps and NAME_pids
#       (the nodes' host pids); uses $bin's CLI to wait for writes.
#   ab_bins BASE_BIN NEW_BIN
#       sets base_bin and new_bin (absolute) for an A/B script, or exits 2 unless
#       each directory holds `shoal` and `shoal-bench`.
shoal_cluster() {
  local name=$1 work=$2 bin=$3 port=$4
  shift 4
  local i j join eps="" sql="" pids=() sqlflag=0 peerflag=0 sqlargs secargs=() loadargs=() mergeargs=()
  "$bin/shoal" start --help 2>/dev/null | grep -q -- --sql-addr && sqlflag=1
  "$bin/shoal" start --help 2>/dev/null | grep -q -- --peer-addr && peerflag=1
  # A node starts without certificates only when told so (binaries before that
  # had no such flag); with --certs-dir among the flags, the CLI calls below use it.
  local certs="" prev="" a
  "$bin/shoal" start --help 2>/dev/null | grep -q -- --split-qps && loadargs=(--split-qps 0)
  "$bin/shoal" start --help 2>/dev/null | grep -q -- --merge-after && mergeargs=(--merge-after 0)
  for a in "$@"; do
    [ "$prev" = --certs-dir ] && certs="$a"
    [ "$a" = --split-qps ] && loadargs=()
    [ "$a" = --merge-after ] && mergeargs=()
    prev="$a"
  done
  if [ -z "$certs" ] && "$bin/shoal" start --help 2>/dev/null | grep -q -- --insecure; then
    secargs=(--insecure)
  fi
  for i in 1 2 3; do
    sqlargs=()
    [ "$sqlflag" = 1 ] && sqlargs=(--sql-addr "127.0.0.1:$((port + 20 + i))")
    [ "$peerflag" = 1 ] && sqlargs+=(--peer-addr "127.0.0.1:$((port + 30 + i))")
    join=""
    for j in 1 2 3; do [ "$j" != "$i" ] && join="$join${join:+,}127.0.0.1:$((port + j))"; done
    "$bin/shoal" start --data-dir "$work/$name-$i" --listen-addr "127.0.0.1:$((port + i))" \
      --advertise-addr "127.0.0.1:$((port + i))" --http-addr "127.0.0.1:$((port + 10 + i))" \
      --join "$join" "${sqlargs[@]}" "${secargs[@]}" "${loadargs[@]}" "${mergeargs[@]}" "$@" >>"$work/$name-$i.log" 2>&1 &
    pids+=($!)
    eps="$eps${eps:+,}127.0.0.1:$((port + i))"
    sql="$sql${sql:+,}127.0.0.1:$((port + 20 + i))"
  done
  eval "${name}_eps=$eps"
  eval "${name}_sql=$sql"
  eval "${name}_pids=(${pids[*]})"
  for _ in $(seq 1 90); do
    SHOAL_HOST="$eps" "$bin/shoal" kv put bench-ready 1 --timeout 5 ${certs:+--certs-dir "$certs"} \
      >/dev/null 2>&1 && return 0
    "$bin/shoal" init --host "127.0.0.1:$((port + 1))" --timeout 5 ${certs:+--certs-dir "$certs"} \
      >/dev/null 2>&1 || true
    sleep 1
  done
  echo "cluster $name did not take writes within 90 s (logs: $work/$name-*.log)" >&2
  return 1
}

shoal_stop() {
  local -n _pids="${1}_pids"
  kill "${_pids[@]}" 2>/dev/null || true
  wait "${_pids[@]}" 2>/dev/null || true
}

shoal_cpu() {
  local -n _pids="${1}_pids"
  local secs=$2 hz p before=() out=() i=0
  hz=$(getconf CLK_TCK)
  for p in "${_pids[@]}"; do before+=("$(awk '{print $14 + $15}' "/proc/$p/stat")"); done
  sleep "$secs"
  for p in "${_pids[@]}"; do
    out+=("$(awk -v b="${before[$i]}" -v s="$secs" -v hz="$hz" '{printf "%.1f", ($14 + $15 - b) / hz / s * 100}' "/proc/$p/stat")")
    i=$((i + 1))
  done
  echo "${out[*]}"
}

bench_run() {
  local name=$1 cpu_file=$2 secs=$3 bin=$4 cpu
  shift 4
  (sleep 1; shoal_cpu "$name" $((secs - 2)) >"$cpu_file") &
  cpu=$!
  "$bin/shoal-bench" "$@" >/dev/null
  wait "$cpu"
}

ab_bins() {
  base_bin=$(cd "$1" && pwd)
  new_bin=$(cd "$2" && pwd)
  local b f
  for b in "$base_bin" "$new_bin"; do
    for f in shoal shoal-bench; do
      [ -x "$b/$f" ] || { echo "$b/$f: not an executable" >&2; exit 2; }
    done
  done
}

shoal_containers() {
  local name=$1 k=$2 mode=$3
  shift 3
  local i j ip port join eps="" pids=() c
  for i in 1 2 3; do
    mkdir -p "$work/$name-$i"
    c="shoal-bench-pod-$name-$i"
    join=""
    if [ "$mode" = host ]; then
      port=$((27600 + 100 * k))
      for j in 1 2 3; do [ "$j" != "$i" ] && join="$join${join:+,}127.0.0.1:$((port + j))"; done
      docker run -d --name "$c" --network host --user "$(id -u):$(id -g)" \
        -e SHOAL_SPLIT_QPS=0 -e SHOAL_MERGE_AFTER=0 -v "$work/$name-$i:/var/lib/shoal" "$@" "$image" start --insecure \
        --listen-addr "127.0.0.1:$((port + i))" --advertise-addr "127.0.0.1:$((port + i))" \
        --http-addr "127.0.0.1:$((port + 10 + i))" --peer-addr "127.0.0.1:$((port + 30 + i))" \
        --sql-addr "127.0.0.1:$((port + 20 + i))" --join "$join" >/dev/null
      eps="$eps${eps:+,}127.0.0.1:$((port + i))"
    else
      ip="$pods_subnet.$((10 * k + i))"
      for j in 1 2 3; do [ "$j" != "$i" ] && join="$join${join:+,}$pods_subnet.$((10 * k + j)):7070"; done
      docker run -d --name "$c" --network "$pods_net" --ip "$ip" --user "$(id -u):$(id -g)" \
        -e SHOAL_SPLIT_QPS=0 -e SHOAL_MERGE_AFTER=0 -v "$work/$name-$i:/var/lib/shoal" "$@" "$image" start --insecure \
        --listen-addr 0.0.0.0:7070 --advertise-addr "$ip:7070" --http-addr 0.0.0.0:7080 \
        --peer-addr 0.0.0.0:7071 --sql-addr 0.0.0.0:5432 --join "$join" >/dev/null
      eps="$eps${eps:+,}$ip:7070"
    fi
    pids+=("$(docker inspect -f '{{.State.Pid}}' "$c")")
  done
  eval "${name}_eps=$eps"
  eval "${name}_pids=(${pids[*]})"
  for _ in $(seq 1 90); do
    SHOAL_HOST="$eps" "$bin/shoal" kv put bench-ready 1 --timeout 5 >/dev/null 2>&1 && return 0
    "$bin/shoal" init --host "${eps%%,*}" --timeout 5 >/dev/null 2>&1 || true
    sleep 1
  done
  echo "cluster $name did not take writes within 90 s" >&2
  for i in 1 2 3; do docker logs "shoal-bench-pod-$name-$i" 2>&1 | tail -5 >&2; done
  return 1
}
