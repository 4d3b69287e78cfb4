# PGXS build for the webhook extension.

EXTENSION = webhook
# The version, written only here: the control file is generated from
# webhook.control.in, and the C code gets it as WEBHOOK_VERSION.
EXTVERSION = 0.1
MODULE_big = webhook
OBJS = src/webhook.o src/guc.o src/capture.o src/owner.o src/plans.o src/util.o src/rowjson.o src/queue.o src/endpoints.o src/dispatch.o src/held.o src/record.o src/handshake.o src/render.o \
	src/signing.o src/http.o src/http_message.o src/worker.o src/moderate.o src/status.o \
	src/databases.o src/launcher.o src/limits.o
# The script is built from its parts in src/sql, one per subject.
DATA_built = webhook--$(EXTVERSION).sql
EXTRA_CLEAN = webhook.control
PGFILEDESC = "webhook - row changes as webhook deliveries"

SHLIB_LINK += -lcurl
PG_CPPFLAGS += -DWEBHOOK_VERSION='"$(EXTVERSION)"'
PG_CPPFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

REGRESS = install endpoint capture events payload privileges settings moderate trigger edges security formats operations
# installcheck boots its own server with the library preloaded: it never
# depends on, or changes, the settings of a server it is pointed at.
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check
# The claim's isolation tests (specs/), on a server of their own with the
# same settings.
ISOLATION = claim
ISOLATION_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check_iso
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: webhook.control

webhook--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

webhook.control: webhook.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@

# Makefile.global resets PROVE_FLAGS, so this must come after the include.
PROVE_FLAGS += -I test/perl

# PGXS tracks no header dependencies: rebuild everything when a header
# changes, or objects disagree about a struct's layout.
$(OBJS): $(wildcard src/*.h)
