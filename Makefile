# upperd: one non-recursive Makefile.  Objects go under build/ (build/asan/
# for the sanitizer build), binaries into bin/ (build/asan/bin/).
#
#   make            build bin/upperd, bin/upper, bin/upper-bench
#   make run        install what is missing, build, start upperd on defaults
#   make test       install what is missing, build, run every test, then
#                   the whole suite again under ASan+UBSan
#   make asan       only the sanitizer run
#   make bench      the benchmark (upperd against a reference server), then
#                   the engine comparison and curves (make bench-engines)
#   make profile    perf profiles of the scenarios upperd misses

PREFIX  ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
CC      ?= cc
PKGS    := libmicrohttpd jansson gnutls libxcrypt libsystemd
# The version upperd reports (/stats, upperd_build_info, --version), and,
# for the upgrade test only, another state layout number to stamp.
VERSION ?= 0.1.0
STATE_LAYOUT ?=

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wvla -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -D_GNU_SOURCE $(WARN) -Iinclude -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  := -lunistring -lm -luring

ifeq ($(SAN),1)
OUT     := build/asan
BIN     := build/asan/bin
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
else
OUT     := build
BIN     := bin
endif

COM_SRCS := $(wildcard common/*.c)
SUP_SRCS := $(wildcard supervisor/*.c)
WRK_SRCS := $(wildcard workers/*.c)
UPPERD_OBJS := $(patsubst %.c,$(OUT)/%.o,$(COM_SRCS) $(SUP_SRCS) \
    $(WRK_SRCS))

UNIT_TESTS := upcase render config backoff gate_line upg_state act auth
UNIT_BINS  := $(patsubst %,$(BIN)/test_%,$(UNIT_TESTS))

# Each unit test links only the module it tests.
TEST_upcase_OBJS  := workers/upcase.o
TEST_render_OBJS  := supervisor/render_json.o supervisor/render_prom.o \
                     supervisor/render_html.o supervisor/status_page.o \
                     common/counters.o
TEST_config_OBJS  := supervisor/config.o common/net.o common/numparse.o
TEST_backoff_OBJS := supervisor/backoff.o
TEST_gate_line_OBJS := supervisor/gate_line.o
TEST_auth_OBJS    := supervisor/auth.o
TEST_upg_state_OBJS := supervisor/upg_state.o supervisor/version.o
TEST_act_OBJS     := supervisor/act_classify.o

PYTHON ?= /usr/bin/python3
# What building needs (make run), and what the tests need on top (make test).
DEB_BUILD := libmicrohttpd-dev libjansson-dev libunistring-dev pkg-config \
             libgnutls28-dev libcrypt-dev libsystemd-dev liburing-dev
# What make deb needs on top of DEB_BUILD (debian/control's Build-Depends).
DEB_PKG   := debhelper dpkg-dev fakeroot lintian
DEB_TEST  := libcmocka-dev python3-pytest curl prometheus chromium \
             mandoc man-db groff-base systemd logrotate clang-format $(DEB_PKG)
# deploy/ checked and run by its tools (test_deploy.py, test_fleet.py).
DEB_TEST  += haproxy nginx-light libnginx-mod-stream python3-yaml
# test_stats_security.py: a CA and certificates made at test time.
DEB_TEST  += openssl
# The Java textbook clients (test_textbook.py) and the status page in
# Chromium (test_observability.py: node; npm comes with nodejs or as npm).
DEB_TEST  += default-jdk-headless nodejs
# make fuzz and make valgrind (both in make check)
DEB_TEST  += clang-14 libclang-rt-14-dev libfuzzer-14-dev valgrind
# make bench's peers and pictures (tests/bench/engines.sh).
DEB_BENCH := gnuplot-nox memcached redis-server


.PHONY: system-uring bench-engines bench-tail
.PHONY: all run test check unit system asan bench profile deps deps-build format \
        format-check clean fuzz fuzz-build fuzz-short valgrind soak install uninstall deb stamped FORCE

all: $(BIN)/upperd $(BIN)/upper $(BIN)/upper-bench $(BIN)/upper-ref \
    $(BIN)/upper-ref-uring

$(BIN)/upperd: $(UPPERD_OBJS) | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

# The stamps go into supervisor/version.c alone; the stamp file changes
# (and so version.o is rebuilt) only when VERSION or STATE_LAYOUT does.
STAMP_DEFS = -DUPPERD_VERSION_STRING='"$(VERSION)"' \
    $(if $(STATE_LAYOUT),-DUPG_STATE_LAYOUT=$(STATE_LAYOUT))
$(OUT)/supervisor/version.o: CFLAGS += $(STAMP_DEFS)
$(OUT)/supervisor/version.o: $(OUT)/version.stamp
$(OUT)/version.stamp: FORCE
	@mkdir -p $(OUT); echo "$(VERSION) $(STATE_LAYOUT)" | \
	    cmp -s - $@ || echo "$(VERSION) $(STATE_LAYOUT)" > $@

# A second upperd with other stamps, linked from this build's objects into
# STAMP_DIR (the upgrade test's new binary):
#   make stamped STAMP_DIR=/tmp/x VERSION=0.1.1-test [STATE_LAYOUT=99]
STAMP_DIR ?= $(OUT)/stamped
stamped: $(filter-out $(OUT)/supervisor/version.o,$(UPPERD_OBJS))
	@mkdir -p $(STAMP_DIR)
	$(CC) $(CFLAGS) $(STAMP_DEFS) $(PKG_CFLAGS) -c \
	    -o $(STAMP_DIR)/version.o supervisor/version.c
	$(CC) $(LDFLAGS) -o $(STAMP_DIR)/upperd $^ $(STAMP_DIR)/version.o \
	    $(PKG_LIBS) $(LDLIBS)

NET_OBJS := $(OUT)/common/net.o $(OUT)/common/numparse.o

$(BIN)/upper: $(OUT)/tools/upper.o $(NET_OBJS) | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^

# The load generator: tools/bench/, one file per job (bench.h lists them).
BENCH_SRCS := $(wildcard tools/bench/*.c)
$(BIN)/upper-bench: $(patsubst %.c,$(OUT)/%.o,$(BENCH_SRCS)) \
    $(NET_OBJS) $(OUT)/workers/upcase.o | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lunistring -lm

# The benchmark's reference server: a bare epoll echo that ASCII-uppercases.
$(BIN)/upper-ref: $(OUT)/tools/upper-ref.o $(NET_OBJS) \
    $(OUT)/workers/upcase.o | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lunistring

# The same, with io_uring: the limit of the completion model.
$(BIN)/upper-ref-uring: $(OUT)/tools/upper-ref-uring.o $(NET_OBJS) \
    $(OUT)/workers/upcase.o | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lunistring -luring

# Fixed request, fixed-length reply: the engine bench's load for upperd,
# the references and the peers (memcached, Redis).
$(BIN)/peer-rr: $(OUT)/tests/bench/peer_rr.o | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^

# The transform alone, on one core (make bench prints it).
$(BIN)/upcase-speed: $(OUT)/tests/bench/upcase_speed.o $(OUT)/workers/upcase.o \
    | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lunistring

# /metrics fetched at a fixed rate during (a) (make bench's scrape row).
$(BIN)/upperd-scrape: $(OUT)/tests/bench/scrape.o | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^

# A unit test reaches into the private headers of the module it tests.
$(OUT)/tests/unit/%.o: CFLAGS += -Isupervisor

$(OUT)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BIN):
	@mkdir -p $@

.SECONDEXPANSION:
$(BIN)/test_%: $(OUT)/tests/unit/test_%.o $$(addprefix $(OUT)/,$$(TEST_$$*_OBJS)) | $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka -lunistring -lm

run: deps-build all
	$(BIN)/upperd

test: deps
	$(MAKE) check
	$(MAKE) SAN=1 check

asan: deps
	$(MAKE) SAN=1 check

# The fuzzers and memcheck build their own way: they run once, in the plain
# pass of make test.  (Defined before the rule: make expands a rule's
# prerequisites when it reads the rule.)
ifneq ($(SAN),1)
CHECK_HARDEN := fuzz-short valgrind
endif

check: format-check all unit system system-uring $(CHECK_HARDEN)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; \
	    UPPERD_PYTHON=$(PYTHON) $$t; done

# The package is built from the source the same way whatever the build or
# engine: the plain pass builds, lints, installs and purges it; the ASan and
# io_uring passes leave test_deb.py out instead of building it again.
ifeq ($(SAN),1)
ONCE_ONLY := --ignore=test_deb.py
endif

system: all
	cd tests/system && UPPERD_BIN=$(CURDIR)/$(BIN) timeout 900 \
	    $(PYTHON) -m pytest -x -q -p no:cacheprovider $(ONCE_ONLY) \
	    $(PYTEST_ARGS) .

# The same suite with every upperd on the io_uring engine; under the
# sanitizers only the files that exercise the workers (the whole suite
# once more under ASan would double the longest pass).
ifeq ($(SAN),1)
URING_TESTS ?= test_transform.py test_worker_edges.py test_lifecycle.py \
    test_bad_input.py test_counters.py test_textbook.py
else
URING_TESTS ?= .
endif
system-uring: all
	cd tests/system && UPPERD_IO_ENGINE=io_uring UPPERD_BIN=$(CURDIR)/$(BIN) \
	    timeout 900 $(PYTHON) -m pytest -x -q -p no:cacheprovider \
	    --ignore=test_deb.py $(PYTEST_ARGS) $(URING_TESTS)

bench: deps all $(BIN)/upcase-speed $(BIN)/upperd-scrape $(BIN)/peer-rr
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_BENCH)"
	BIN=$(CURDIR)/$(BIN) tests/bench/run_bench.sh
	BIN=$(CURDIR)/$(BIN) PYTHON=$(PYTHON) tests/bench/engines.sh

# Only the engine comparison and the curves (BENCH_QUICK=1: two minutes).
bench-engines: all $(BIN)/peer-rr
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_BENCH)"
	BIN=$(CURDIR)/$(BIN) PYTHON=$(PYTHON) tests/bench/engines.sh

# (a)'s tail latency: both engines under each scheduling policy and with
# one worker, beside the references (issue 15; about two minutes).
bench-tail: all $(BIN)/peer-rr
	BIN=$(CURDIR)/$(BIN) PYTHON=$(PYTHON) tests/bench/tail.sh

# Where the time goes in (a), (b) and (f), against the reference (perf).
profile: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="linux-perf"
	BIN=$(CURDIR)/$(BIN) PROFILE_ENGINE=epoll tests/bench/profile.sh
	BIN=$(CURDIR)/$(BIN) PROFILE_ENGINE=io_uring tests/bench/profile.sh

deps-build:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_BUILD)"

deps: DEB_PKGS ?= $(DEB_BUILD) $(DEB_TEST)
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; fi

# Every C file of the tree, for make format and make format-check.
FORMAT_SRCS = $(shell git ls-files '*.[ch]' 2>/dev/null || \
    find include common supervisor workers tools tests -name '*.[ch]')

format:
	clang-format -i $(FORMAT_SRCS)

# make check fails when a file is not as .clang-format writes it.
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format: ok"

# make install: the layout of upperd(8) FILES.  The sample config and the
# logrotate snippet are an operator's files once installed: never
# overwritten, and removed by uninstall only while unedited.  The unit
# files name the installed binary and config (they ship with /usr/sbin and
# /etc).  Each of SHARE_TREES goes to share/upperd/<its last name>: the
# dashboards, the Prometheus scrape example with its rules and alerts, and
# the load balancer and Kubernetes examples.
MAN_PAGES := docs/upper.1 docs/upper-bench.1 docs/upperd.conf.5 docs/upperd.8
UNITS     := $(wildcard deploy/systemd/*.service deploy/systemd/*.socket)
SHARE_TREES := dashboards deploy/prometheus deploy/haproxy deploy/nginx \
               deploy/kubernetes
ETC_FILES := upperd/upperd.conf:deploy/upperd.conf \
             logrotate.d/upperd:deploy/logrotate/upperd

# A path with a space splits into two words: an uninstall's rm -rf would
# remove the first word's directory (PREFIX="/opt/my upperd": /opt/my).
PATH_VARS_SPLIT = $(strip $(foreach v,DESTDIR PREFIX SYSCONFDIR BINDIR \
    SBINDIR DATADIR MANDIR SYSTEMDUNITDIR,$(if $(word 2,$($(v))),$(v))))
NO_SPLIT_PATHS = $(if $(PATH_VARS_SPLIT),$(error $(PATH_VARS_SPLIT): \
    a path with a space is not supported))

install: all
	$(NO_SPLIT_PATHS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
	    $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/upperd \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	install -m 755 $(BIN)/upperd $(DESTDIR)$(SBINDIR)
	install -m 755 $(BIN)/upper $(BIN)/upper-bench $(DESTDIR)$(BINDIR)
	@set -e; for m in $(MAN_PAGES); do s=$${m##*.}; \
	    echo install -D -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/$${m#docs/}; \
	    install -D -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/$${m#docs/}; done
	@set -e; for u in $(UNITS); do \
	    echo "install $$u -> $(DESTDIR)$(SYSTEMDUNITDIR)/"; \
	    sed -e 's|/usr/sbin/upperd|$(SBINDIR)/upperd|g' \
	        -e 's|/etc/upperd/|$(SYSCONFDIR)/upperd/|g' $$u \
	        >$(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}; \
	    chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}; done
	@set -e; for t in $(SHARE_TREES); do \
	    echo "install $$t -> $(DESTDIR)$(DATADIR)/upperd/$${t##*/}"; \
	    (cd $$t && find . -type f) | while read -r f; do \
	        install -D -m 644 $$t/$$f \
	            $(DESTDIR)$(DATADIR)/upperd/$${t##*/}/$$f; done; done
	@set -e; for e in $(ETC_FILES); do t=$(DESTDIR)$(SYSCONFDIR)/$${e%%:*}; \
	    if [ -e $$t ]; then echo "keeping existing $$t"; \
	    else echo "install $${e#*:} -> $$t"; \
	        install -m 644 $${e#*:} $$t; fi; done

# make deb: the Debian package (debian/), built from a copy of the tree
# under $(DEB_OUT) so the checkout gets no build products, then checked by
# lintian (errors fail).  The .deb is left in $(DEB_OUT).
DEB_OUT ?= build/deb
DEB_SRC  = $(abspath $(DEB_OUT))/src/upperd

deb:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_BUILD) $(DEB_PKG)"
	rm -rf $(DEB_SRC) && mkdir -p $(DEB_SRC)
	tar -c --exclude=./build --exclude=./bin --exclude=./.git \
	    --exclude=./tests/system/node_modules \
	    --exclude=./tests/system/artifacts --exclude=__pycache__ . \
	    | tar -x -C $(DEB_SRC)
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
	    dpkg-buildpackage -us -uc -b
	mv $(DEB_SRC)/../upperd_* $(DEB_SRC)/../upperd-dbgsym_* $(abspath $(DEB_OUT))/
	rm -rf $(abspath $(DEB_OUT))/src
	lintian --fail-on error $(abspath $(DEB_OUT))/upperd_*.deb

uninstall:
	$(NO_SPLIT_PATHS)
	rm -f $(DESTDIR)$(SBINDIR)/upperd $(DESTDIR)$(BINDIR)/upper \
	    $(DESTDIR)$(BINDIR)/upper-bench
	rm -f $(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
	rm -f $(foreach u,$(UNITS),$(DESTDIR)$(SYSTEMDUNITDIR)/$(notdir $(u)))
	rm -rf $(DESTDIR)$(DATADIR)/upperd
	@for e in $(ETC_FILES); do t=$(DESTDIR)$(SYSCONFDIR)/$${e%%:*}; \
	    if cmp -s $${e#*:} $$t; then echo "rm -f $$t"; rm -f $$t; \
	    elif [ -e $$t ]; then echo "keeping edited $$t"; fi; done
	@rmdir $(DESTDIR)$(SYSCONFDIR)/upperd 2>/dev/null || true

clean:
	rm -rf build bin

FORCE:

# make valgrind: the unit tests, then a system smoke (tests/valgrind_smoke.py:
# traffic, every endpoint, HUP, TTIN/TTOU, stop) with memcheck on the
# supervisor and every worker; any error or definite leak fails it.  Logs
# in build/valgrind/.  tests/valgrind.supp, when present, holds third-party
# suppressions only.
VALGRIND := valgrind --tool=memcheck -q --error-exitcode=99 \
    --leak-check=full --errors-for-leak-kinds=definite
VALGRIND_SUPP := $(wildcard tests/valgrind.supp)

valgrind: all $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== valgrind $$t"; \
	    UPPERD_PYTHON=$(PYTHON) $(VALGRIND) \
	        $(addprefix --suppressions=,$(VALGRIND_SUPP)) $$t \
	        >build/valgrind-$$(basename $$t).log 2>&1 || \
	        { cat build/valgrind-$$(basename $$t).log; exit 1; }; done
	timeout 300 $(PYTHON) tests/valgrind_smoke.py $(CURDIR)/$(BIN) \
	    $(CURDIR)/build/valgrind $(VALGRIND_SUPP)

# make soak: SOAK_S seconds of mixed traffic with workers killed, HUPs and
# TTIN/TTOU, sampling every process's RSS and fds (tests/soak/soak.py).  A
# benchmark: not part of make test.
SOAK_S ?= 600

soak: all
	$(PYTHON) tests/soak/soak.py $(CURDIR)/$(BIN) $(SOAK_S)

# libFuzzer harnesses (tests/fuzz/): each parser or transform is compiled
# again by clang with the fuzzer's coverage and ASan+UBSan into
# build/fuzz/, whatever SAN says.  make fuzz runs each harness for FUZZ_S
# seconds, one after the other; make check runs each for FUZZ_SHORT_S over
# its checked-in corpus plus fresh input.  New inputs go to
# build/fuzz/corpus/NAME (the first corpus directory), crashes to
# build/fuzz/artifacts/; a crash found is copied into tests/fuzz/corpus/
# by hand, with its fix.
FUZZ_CC      ?= clang-14
FUZZ_S       ?= 120
FUZZ_SHORT_S ?= 10
FUZZ_OUT     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                $(WARN) -Iinclude -Isupervisor -MMD -MP $(FUZZ_SAN) \
                -fsanitize=fuzzer-no-link
FUZZ_HARNESSES := upcase gate config upg act
FUZZ_BINS    := $(patsubst %,$(FUZZ_OUT)/bin/fuzz_%,$(FUZZ_HARNESSES))
FUZZ_upcase_OBJS := workers/upcase.o
FUZZ_gate_OBJS   := supervisor/gate_line.o supervisor/http_route.o
FUZZ_config_OBJS := $(TEST_config_OBJS)
FUZZ_upg_OBJS    := $(TEST_upg_state_OBJS)
FUZZ_act_OBJS    := $(TEST_act_OBJS)
# What a harness run is given: a time-out per input, a memory cap, the
# harness's dictionary and options (NAME.options) when it has them.
FUZZ_RUN = -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    $$(test -f tests/fuzz/$$h.dict && echo -dict=tests/fuzz/$$h.dict) \
    $$(cat tests/fuzz/$$h.options 2>/dev/null) \
    -artifact_prefix=$(CURDIR)/$(FUZZ_OUT)/artifacts/$$h- \
    $(FUZZ_OUT)/corpus/$$h tests/fuzz/corpus/$$h

$(FUZZ_OUT)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_OUT)/bin/fuzz_%: $(FUZZ_OUT)/tests/fuzz/fuzz_%.o \
    $$(addprefix $(FUZZ_OUT)/,$$(FUZZ_$$*_OBJS))
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ -lunistring

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@set -e; for h in $(FUZZ_HARNESSES); do \
	    mkdir -p $(FUZZ_OUT)/corpus/$$h $(FUZZ_OUT)/artifacts; \
	    echo "== fuzz_$$h for $(FUZZ_S) s"; \
	    $(FUZZ_OUT)/bin/fuzz_$$h -max_total_time=$(FUZZ_S) $(FUZZ_RUN); \
	done

fuzz-short: fuzz-build
	@set -e; for h in $(FUZZ_HARNESSES); do \
	    mkdir -p $(FUZZ_OUT)/corpus/$$h $(FUZZ_OUT)/artifacts; \
	    log=$(FUZZ_OUT)/fuzz_$$h.log; \
	    if ! $(FUZZ_OUT)/bin/fuzz_$$h -max_total_time=$(FUZZ_SHORT_S) \
	        $(FUZZ_RUN) >$$log 2>&1; then tail -n 60 $$log; exit 1; fi; \
	    echo "fuzz_$$h: $(FUZZ_SHORT_S) s, $$(grep -h \
	        stat::number_of_executed_units $$log | awk '{print $$2}') runs, ok"; \
	done

-include $(shell find build -name '*.d' 2>/dev/null)
.SECONDARY:
