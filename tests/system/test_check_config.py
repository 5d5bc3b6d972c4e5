"""
upperd --check-config (SPEC, "Checking a configuration"): reads the
options and the config file exactly as a start would, binds nothing,
starts nothing; exit 0 with one stderr line ending in "configuration ok",
or exit 2 with the one-line error a start gives.
"""

import socket

from conftest import free_port, run_expect_exit


def test_good_config_binds_nothing(tmp_path, upperd):
    """Even with every address busy (a running upperd on them), the check
    passes: it binds nothing, and the running one is undisturbed."""
    d = upperd(workers=1)
    conf = tmp_path / "upperd.conf"
    conf.write_text("workers = 3\ntcp = 127.0.0.1:%d, [::1]:%d\n"
                    "udp = 127.0.0.1:%d\nstats = 127.0.0.1:%d\n" %
                    (d.tcp_port, d.tcp_port, d.udp_port, d.stats_port))
    pid_file = tmp_path / "upperd.pid"
    r = run_expect_exit(["--check-config", "-c", str(conf), "--pid-file",
                         str(pid_file)])
    assert r.returncode == 0, r
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].endswith("configuration ok"), r
    assert str(conf) in lines[0]
    assert r.stdout == ""
    assert not pid_file.exists()
    assert d.healthz()[0] == 200
    # Options alone are a configuration too.
    r = run_expect_exit(["--check-config", "-w", "2", "--tcp", "off"])
    assert r.returncode == 0 and r.stderr.strip().endswith(
        "configuration ok"), r


def test_bad_config_is_the_start_error(tmp_path):
    conf = tmp_path / "upperd.conf"
    conf.write_text("workers = 2\ncase = shouting\n")
    port = free_port()
    args = ["-c", str(conf), "--tcp", "127.0.0.1:%d" % port, "--udp", "off",
            "--stats", "off"]
    check = run_expect_exit(["--check-config"] + args)
    start = run_expect_exit(args)
    assert check.returncode == 2 and start.returncode == 2, (check, start)
    assert check.stderr == start.stderr, (check.stderr, start.stderr)
    assert len(check.stderr.strip().split("\n")) == 1
    assert ":2: invalid value \"shouting\" for case" in check.stderr
    for bad in (["--tcp", "off,127.0.0.1:1"], ["--user", "no-such-user-x"],
                ["-c", str(tmp_path / "missing.conf")]):
        r = run_expect_exit(["--check-config"] + bad)
        assert r.returncode == 2, r
        assert len(r.stderr.strip().split("\n")) == 1, r.stderr
    # Nothing was bound by any of it.
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.close()
