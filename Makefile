# PGXS build for the webhook extension.

EXTENSION = webhook
EXTVERSION = 0.1
MODULE_big = webhook
OBJS = src/webhook.o src/guc.o src/capture.o src/owner.o src/util.o src/signing.o \
	src/http.o src/worker.o src/moderate.o
DATA = webhook--$(EXTVERSION).sql
PGFILEDESC = "webhook - row changes as webhook deliveries"

SHLIB_LINK += -lcurl
PG_CPPFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

REGRESS = install endpoint capture events payload privileges settings moderate trigger edges security
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Makefile.global resets PROVE_FLAGS, so this must come after the include.
PROVE_FLAGS += -I test/perl

# PGXS tracks no header dependencies: rebuild everything when a header
# changes, or objects disagree about a struct's layout.
$(OBJS): $(wildcard src/*.h)
