# qforge - one non-recursive Makefile.
#
#   make            build bin/qforge-* and the libraries (build/lib*.a)
#   make check      build and run the whole test suite (tests/run.sh)
#   make asan       build with ASan+UBSan into build-asan/ and run the suite
#   make fuzz       libFuzzer targets for the parsers (FUZZ_SECONDS=60, inputs <= 64 KiB)
#   make deps       install missing Debian packages (root), else print the command
#   make MPI=1      also bin/qforge-calibrate-mpi and bin/qforge-quantize-mpi (Open MPI's
#                   mpicc; the libraries stay MPI-free: formats/qf_mpi.c is linked into these only)
#   make demo       convert -> quantize -> verify on the default model
#
# Layout: every <dir>/qforge-*.c is a program; every other <dir>/*.c is
# library code of that dir. tests/unit/*_test.c are unit test programs.

CC       ?= gcc
ARCH     ?= -march=native
OPT      ?= -O2
WARN     ?= -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-sign-compare -Wvla
ifeq ($(CI),true)
WARN     += -Werror
endif
CFLAGS   ?= $(OPT) $(ARCH)
ALL_CFLAGS = $(CFLAGS) -fopenmp -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) -Iformats -Iverify -Icalibrate -Iquantize -Iconvert -MMD -MP $(EXTRA_CFLAGS)
LDLIBS   = -fopenmp -lz -lxxhash -lm $(EXTRA_LDFLAGS)
B        ?= build
BIN      ?= bin
QF_DATA  ?= ../shared
MODEL    ?= $(QF_DATA)/models/stories260K
export QF_DATA

LIBDIRS  = quantize calibrate verify convert formats
lib_src  = $(filter-out $(1)/qforge-%.c $(1)/qf_mpi.c,$(wildcard $(1)/*.c))
LIBS     = $(foreach d,$(LIBDIRS),$(B)/libqf_$(d).a)
PROG_SRC = $(wildcard $(foreach d,$(LIBDIRS),$(d)/qforge-*.c))
PROGS    = $(patsubst %.c,$(BIN)/%,$(notdir $(PROG_SRC)))
TEST_SRC = $(wildcard tests/unit/*_test.c)
TESTS    = $(patsubst tests/unit/%.c,$(B)/tests/%,$(TEST_SRC))
TOOL_SRC = $(wildcard tests/tools/*.c scripts/*.c)
TOOLS    = $(patsubst %.c,$(B)/tools/%,$(notdir $(TOOL_SRC)))

.PHONY: all check variants mpi asan fuzz deps demo clean bench
MPI_PROGS = $(BIN)/qforge-calibrate-mpi $(BIN)/qforge-quantize-mpi
all: $(PROGS) $(TESTS) $(TOOLS) $(if $(filter 1,$(MPI)),$(MPI_PROGS))

# libraries -------------------------------------------------------------
define LIB_RULES
$(B)/libqf_$(1).a: $(patsubst %.c,$(B)/obj/%.o,$(call lib_src,$(1)))
	@mkdir -p $$(@D)
	@rm -f $$@
	$$(if $$^,ar rcs $$@ $$^,ar rcs $$@)
endef
$(foreach d,$(LIBDIRS),$(eval $(call LIB_RULES,$(d))))

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# --version: the commit and the build flags, compiled into qf_cli.o, which is
# rebuilt when they change (the stamp file is rewritten only then).
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
VERSION_DEFS = -DQF_GIT_COMMIT='"$(GIT_COMMIT)"' -DQF_BUILD_FLAGS='"$(strip $(CC) $(subst ",,$(CFLAGS) $(EXTRA_CFLAGS)))"'
$(B)/obj/formats/qf_cli.o: ALL_CFLAGS += $(VERSION_DEFS)
$(B)/obj/formats/qf_cli.o: $(B)/version.stamp
$(B)/version.stamp: FORCE
	@mkdir -p $(@D)
	@echo '$(subst ','',$(VERSION_DEFS))' | cmp -s - $@ || echo '$(subst ','',$(VERSION_DEFS))' > $@
.PHONY: FORCE

# programs: bin/qforge-x from <dir>/qforge-x.c ---------------------------
vpath qforge-%.c $(LIBDIRS)
$(BIN)/qforge-%: $(B)/obj/prog/qforge-%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)
$(B)/obj/prog/qforge-%.o: qforge-%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# MPI programs (make MPI=1): the program compiled with -DQF_MPI and linked
# with formats/qf_mpi.c by mpicc, over the same MPI-free libraries.
MPICC ?= mpicc
ifeq ($(MPI),1)
$(BIN)/qforge-%-mpi: $(B)/obj/mpi/qforge-%.o $(B)/obj/mpi/qf_mpi.o $(LIBS)
	@mkdir -p $(@D)
	OMPI_CC=$(CC) $(MPICC) $(ALL_CFLAGS) $(B)/obj/mpi/qforge-$*.o $(B)/obj/mpi/qf_mpi.o -o $@ -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)
$(B)/obj/mpi/qforge-%.o: qforge-%.c
	@mkdir -p $(@D)
	OMPI_CC=$(CC) $(MPICC) $(ALL_CFLAGS) -DQF_MPI -c $< -o $@
$(B)/obj/mpi/qf_mpi.o: formats/qf_mpi.c
	@mkdir -p $(@D)
	OMPI_CC=$(CC) $(MPICC) $(ALL_CFLAGS) -c $< -o $@
endif
.PRECIOUS: $(B)/obj/mpi/%.o
# the MPI programs when mpicc exists (make check builds them for tests/cli/mpi.sh)
mpi:
	@if command -v $(MPICC) >/dev/null 2>&1; then $(MAKE) --no-print-directory MPI=1 $(MPI_PROGS); \
	else echo "mpi: $(MPICC) not found: no MPI programs (make deps installs Open MPI)"; fi

# unit tests --------------------------------------------------------------
$(B)/tests/%_test: tests/unit/%_test.c $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests/unit $< -o $@ -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)

# helper programs used by tests/benchmarks (generators etc.) ------------
vpath %.c tests/tools scripts
$(B)/tools/%: %.c $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ -Wl,--start-group $(LIBS) -Wl,--end-group $(LDLIBS)

# The kernels' other instruction-set paths, which a native build on this
# machine would not run: AVX2 without AVX-512/VNNI, and plain x86-64 (the
# portable fallbacks). Only their unit tests are built (a few seconds).
KERNEL_TESTS = quants_test kquant_test iq_search_test quantize_search_test matmul_q8_test engine_test numfmt_test fp8_test gptq_test
ifeq ($(shell uname -m),x86_64)
VARIANTS = build-avx2:-march=native~-mno-avx512f~-mno-avxvnni build-x86-64:-march=x86-64
endif
VARIANT_DIRS = $(foreach v,$(VARIANTS),$(word 1,$(subst :, ,$(v))))
variants:
	@for v in $(VARIANTS); do d=$${v%%:*}; a=$$(echo "$${v#*:}" | tr '~' ' '); \
	  $(MAKE) --no-print-directory B=$$d BIN=$$d/bin ARCH="$$a" $(foreach t,$(KERNEL_TESTS),$$d/tests/$(t)) >/dev/null || exit 1; \
	done

check: all variants mpi
	QF_BIN=$(BIN) QF_TOOLS=$(B)/tools tests/run.sh $(B) $(VARIANT_DIRS)

asan:
	$(MAKE) B=build-asan BIN=build-asan/bin OPT="-O1 -g" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  QF_BIN=build-asan/bin QF_TOOLS=build-asan/tools QF_ASAN=1 tests/run.sh build-asan

FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	$(MAKE) B=build-fuzz BIN=build-fuzz/bin CC=clang OPT="-O1 -g" ARCH=-march=native \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" EXTRA_LDFLAGS="-fsanitize=address,undefined" \
	  build-fuzz/libqf_verify.a build-fuzz/libqf_formats.a
	@for f in tests/fuzz/fuzz_*.c; do n=$$(basename $$f .c); \
	  clang -O1 -g -march=native -std=c11 -D_DEFAULT_SOURCE -Iformats -Iverify -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $$f build-fuzz/libqf_verify.a build-fuzz/libqf_formats.a -lz -lxxhash -lm -fopenmp -o build-fuzz/$$n || exit 1; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -artifact_prefix=build-fuzz/$$n- build-fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; \
	done

DEBIAN_PKGS = zlib1g-dev libxxhash-dev libjsmn-dev gcc make clang libclang-rt-14-dev xxhash time libopenmpi-dev openmpi-bin
deps:
	@missing=""; for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	else echo "deps: missing$$missing; run: sudo apt-get install -y$$missing"; exit 1; fi

demo: deps all
	@bash scripts/demo.sh "$(MODEL)"

# every benchmark (helpers lib.sh, gen-1b.sh and the pairs.sh driver are not benchmarks)
bench: all
	@for s in bench/*.sh; do case $$s in */lib.sh|*/gen-1b.sh|*/pairs.sh) continue;; esac; bash $$s; done

clean:
	rm -rf build build-asan build-fuzz build-avx2 build-x86-64 bin

-include $(shell find $(B) -name '*.d' 2>/dev/null)
