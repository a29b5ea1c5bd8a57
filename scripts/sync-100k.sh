#!/bin/bash
# usage: scripts/sync-100k.sh BIN ROWS  — a master-sync of ROWS employees from a CSV file, end to end
set -e
BIN=$1; ROWS=$2; mkdir -p /tmp/ms; D=$(mktemp -d /tmp/ms/run.XXXX)
P=$((20000 + RANDOM % 20000))
mkdir -p $D/processes && cp processes/master-sync.yaml $D/processes/
cat > $D/nagare.yaml <<Y
connectors:
  rakuraku: { type: rakuraku, base_url: 'http://127.0.0.1:$((P+1))', account: demo, token: rakuraku-demo-token }
  mail: { type: smtp, host: 127.0.0.1, port: $((P+2)), tls: none, from: 'nagare <nagare@example.com>' }
Y
python3 - $ROWS > $D/emp.csv <<'PY'
import sys
n=int(sys.argv[1])
print("社員コード,氏名,フリガナ,メールアドレス,部門コード,役職コード")
for i in range(n):
    print(f"E{i:06d},山田 太郎{i},ヤマダ タロウ,taro{i}@example.com,D{i%50:02d},P1")
PY
$BIN emulate rakuraku --addr 127.0.0.1:$((P+1)) --data $D/rk > $D/rk.log 2>&1 & RK=$!
$BIN emulate smtp --addr 127.0.0.1:$((P+2)) --http-addr 127.0.0.1:$((P+3)) --data $D/smtp > $D/smtp.log 2>&1 & SM=$!
/usr/bin/time -v -o $D/time.txt $BIN -v --data $D/data --config $D/nagare.yaml serve --addr 127.0.0.1:$P --processes $D/processes --users config/users.yaml > $D/serve.log 2>&1 & SV=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$P/health >/dev/null && break; sleep 0.2; done
A="Authorization: Bearer demo-admin"; S="Authorization: Bearer demo-suzuki"; J="Content-Type: application/json"
curl -sf -X PUT -H "$A" -H "$J" http://127.0.0.1:$P/api/v1/processes/master-sync/config -d '{"settings":{"source":"csv"}}' >/dev/null
FILE=$(curl -sf -X POST -H "$S" -H "Content-Type: text/csv" --data-binary @$D/emp.csv "http://127.0.0.1:$P/api/v1/files?process=master-sync&variable=csv_file&name=emp.csv")
T0=$(date +%s.%N)
ID=$(curl -sf -X POST -H "$S" -H "$J" http://127.0.0.1:$P/api/v1/instances -d "{\"process\":\"master-sync\",\"variables\":{\"csv_file\":$FILE}}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
while true; do
  ST=$(curl -sf -H "$S" http://127.0.0.1:$P/api/v1/instances/$ID | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$ST" != "running" ] && break; sleep 0.2
done
T1=$(date +%s.%N)
echo "rows=$ROWS csv_bytes=$(stat -c %s $D/emp.csv) status=$ST seconds=$(python3 -c "print(round($T1-$T0,2))")"
curl -sf -H "$S" http://127.0.0.1:$P/api/v1/instances/$ID | python3 -c 'import json,sys; v=json.load(sys.stdin)["variables"]; r=v.get("結果") or {}; print({k: r.get(k) for k in ["rows","parts","inserted","updated","skipped"]}, "error:", (v.get("エラー") or "")[:300])'
echo "mails: $(curl -sf http://127.0.0.1:$((P+3))/mails | python3 -c 'import json,sys; m=json.load(sys.stdin)["mails"]; print(len(m), m[-1]["subject"] if m else "", m[-1].get("text","") if m else "")')"
echo "emulator rows: $(curl -sf http://127.0.0.1:$((P+1))/emulator/masters/0 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')"
grep -a "importing part" $D/serve.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-220
kill -INT $(pgrep -P $SV); wait $SV || true
kill $RK $SM; wait $RK $SM 2>/dev/null || true
grep -E "Elapsed|Maximum resident|User time|System time" $D/time.txt
echo "dir: $D"
