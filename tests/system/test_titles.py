"""
Process titles (SPEC, "Process titles"): ps tells the processes apart as
nginx's do: "upperd: supervisor [-c FILE]", "upperd: worker N", and a
draining worker says so.  The short name (comm, top) is "upperd" for the
supervisor and "upperd-wN" for worker N.  The title takes argv's memory,
so a reload (which parses the command line again) must still work.
"""

import os
import signal
import socket

from conftest import tcp_roundtrip, wait_until


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def slots(d):
    return {w["slot"]: w for w in d.stats()["workers"] if w.get("pid")}


def test_titles_of_supervisor_and_workers(upperd, tmp_path):
    conf = tmp_path / "upperd.conf"
    conf.write_text("workers = 2\n")
    d = upperd(workers=None, config=str(conf))
    assert cmdline(d.pid) == "upperd: supervisor -c %s" % conf
    assert comm(d.pid) == "upperd"
    ws = slots(d)
    assert sorted(ws) == [0, 1], ws
    for n, w in ws.items():
        assert cmdline(w["pid"]) == "upperd: worker %d" % n
        assert comm(w["pid"]) == "upperd-w%d" % n
    # The reload parses the command line again: the file is still found.
    conf.write_text("workers = 3\n")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: len(slots(d)) == 3 and all(
        w["state"] == "running" for w in slots(d).values()), 10,
        msg="3 workers after the reload")
    assert cmdline(slots(d)[2]["pid"]) == "upperd: worker 2"
    assert tcp_roundtrip(d.tcp_port, b"after") == b"AFTER"


def test_title_without_config(upperd):
    d = upperd(workers=1)
    assert cmdline(d.pid) == "upperd: supervisor"


def test_draining_worker_says_so(upperd):
    """A worker told to stop while a client holds a connection open keeps
    serving it, titled "(draining)"."""
    d = upperd(workers=1, drain_timeout=30)
    old = slots(d)[0]["pid"]
    s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
    try:
        s.sendall(b"hold")
        assert s.recv(4) == b"HOLD"
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: cmdline(old) == "upperd: worker 0 (draining)",
                   10, msg="the old worker's title")
        new = wait_until(lambda: slots(d)[0]["pid"] != old and
                         slots(d)[0]["pid"], 10)
        assert cmdline(new) == "upperd: worker 0"
        s.sendall(b"still")
        assert s.recv(5) == b"STILL"
    finally:
        s.close()
    wait_until(lambda: not os.path.exists("/proc/%d/cmdline" % old) or
               cmdline(old) == "", 10, msg="the drained worker gone")
