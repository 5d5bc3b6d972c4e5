# lib.sh: what run_bench.sh and profile.sh share; sourced, needs $PY.

# A port free for both TCP and UDP on 127.0.0.1, below the ephemeral range.
free_port() {
	"$PY" - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 32000)
    try:
        t = socket.socket(); t.bind(("127.0.0.1", p))
        u = socket.socket(type=socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
        t.close(); u.close(); print(p); break
    except OSError:
        pass
EOF
}
