# waferq: one target a stage, each writing build/$(MODEL)/<stage>/.
#   model -> quantize (train) -> export -> hls -> csim -> bitstream -> driver -> host
# `make demo` runs the chain on the C-sim; `make test` runs every test.

PYTHON3 ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
MODEL   ?= $(if $(filter %.pkl,$(DATA))$(wildcard $(DATA)/meta.json),wm811k_4w4a,wmcnn_4w4a)
W_BITS  ?= 4
A_BITS  ?= 4
FP_EPOCHS  ?= 6
QAT_EPOCHS ?= 4
BUILD   := build/$(MODEL)
DATA    ?=
LIMIT   ?=
STAMP   := $(VENV)/.installed

# Debian tools the tests use; CI runs as root and installs them, so nothing skips there.
APT_PKGS := g++ iverilog yosys device-tree-compiler linux-headers-amd64 gcc-arm-linux-gnueabihf \
            tcl openfpgaloader postgresql

.PHONY: tools install train export import hls-src hls estimate csim layer-tops bench-bits bitstream dtbo driver flash bench demo test clean help

help:
	@echo "make demo    - train, export, generate + compile the C-sim, serve it, classify 1000 maps"
	@echo "make test    - run the whole test suite"
	@echo "stages: install train [DATA=maps.npz] export hls csim bitstream driver flash bench"
	@echo "make import ONNX=model.onnx MODEL=name - a QONNX/QCDQ model instead of train + export"
	@echo "float models: make ptq ONNX=model.onnx CALIB=maps.npz BITS=8 MODEL=name"

install: $(STAMP)

# A MODEL is known when it names a training config (quant/configs/$(MODEL).json),
# is one of the two defaults, or already has a checkpoint or an export in build/.
# Anything else stops every model target: a typo must not train the default CNN
# under a new name.
KNOWN_MODEL = $(or $(filter wmcnn_4w4a wm811k_4w4a,$(MODEL)),$(wildcard quant/configs/$(MODEL).json),\
                   $(wildcard build/$(MODEL)/export/model.json),$(wildcard build/$(MODEL)/train/checkpoint.pt))
.PHONY: model-known
model-known:
	@$(if $(strip $(KNOWN_MODEL)),true,echo "make: unknown MODEL=$(MODEL): no quant/configs/$(MODEL).json and no build/$(MODEL)/ checkpoint or export; known configs: $(notdir $(basename $(wildcard quant/configs/*.json)))" >&2; exit 2)

# An imported model (make import) has no training config: train and export would
# retrain the default CNN over it, so they stop instead.
IMPORTED = $(if $(wildcard $(BUILD)/export/model.json),$(shell grep -l '"family": "graph"' $(BUILD)/export/model.json))
.PHONY: not-imported
not-imported:
	@$(if $(strip $(IMPORTED)),echo "make: MODEL=$(MODEL) was imported from ONNX (make import); it has no training to run or export" >&2; exit 2,true)

tools:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $$missing"; \
		apt-get update -qq || echo "make tools: apt-get update reported errors (mirror sync?); installing from the indexes it fetched"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "make tools: not root, so not installing: $$missing (tests that need them will skip)"; \
	fi

# torch goes first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,hls,test]"
	touch $@

# CONFIG=quant/configs/<variant>.json trains that variant with the file's options;
# without it, W_BITS/A_BITS/FP_EPOCHS/QAT_EPOCHS apply.
TRAIN_OPTS = $(if $(CONFIG),--config $(CONFIG),--w-bits $(W_BITS) --a-bits $(A_BITS) \
             --fp-epochs $(FP_EPOCHS) --qat-epochs $(QAT_EPOCHS))

# LIMIT=N trains on at most N labelled maps of each split of a real file
# (LSWMD.pkl holds about 170k labelled maps): 4,000 train the default W4A4
# CNN in well under a minute on two cores, plus the time to unpickle the file.
train: model-known not-imported $(STAMP)
	$(PY) -m quant.train --out $(BUILD)/train $(TRAIN_OPTS) --ptq $(if $(DATA),--data $(DATA)) \
		$(if $(LIMIT),--limit $(LIMIT))

$(BUILD)/train/checkpoint.pt:
	$(MAKE) train

export: model-known not-imported $(STAMP) $(BUILD)/train/checkpoint.pt
	$(PY) -m quant.export --checkpoint $(BUILD)/train/checkpoint.pt --out $(BUILD)/export

# A QONNX or QCDQ file (Brevitas's bnn_pynq models and the like) as build/$(MODEL)/export,
# verified bit-exact against qonnx's execute_onnx first; an unmappable node stops it with
# exit 2 and one sentence. MODEL must be given: the import names the model, and the
# later targets then know it by its export.
import: $(STAMP)
	@test -n "$(ONNX)" || { echo "make import: give ONNX=model.onnx and MODEL=name" >&2; exit 2; }
	@test "$(origin MODEL)" = "command line" || { echo "make import: give MODEL=name for the imported model" >&2; exit 2; }
	$(PY) -m quant.onnx_import --onnx $(ONNX) --name $(MODEL) --out $(BUILD)/export
# Post-training quantization of a float model into $(BUILD)/export (quant/onnx_import/ptq.py):
#   make ptq ONNX=model.onnx (or TORCH=module:factory INPUT_SHAPE=1x42x42) CALIB=maps.npz|LSWMD.pkl|synth:N \
#            BITS=8 MODEL=name [PTQ_OPTS="--w-bits 6 --input-scale 1/255"]
# MODEL must be given: the new model is named by it, and later targets find it by its export.
BITS ?= 8
.PHONY: ptq ptq-args
ptq-args:
	@$(if $(filter file,$(origin MODEL)),echo "make ptq: name the new model with MODEL=name" >&2; exit 2,true)
	@$(if $(ONNX)$(TORCH),true,echo "make ptq: give ONNX=model.onnx or TORCH=module:factory" >&2; exit 2)
	@$(if $(CALIB),true,echo "make ptq: give CALIB=maps.npz, an LSWMD .pkl or synth:N" >&2; exit 2)

ptq: ptq-args $(STAMP)
	$(PY) -m quant.onnx_import.ptq $(if $(ONNX),--onnx $(ONNX),--torch $(TORCH)) --calib $(CALIB) \
		--bits $(BITS) --name $(MODEL) --out $(BUILD)/export $(if $(INPUT_SHAPE),--input-shape $(INPUT_SHAPE)) \
		$(PTQ_OPTS)

# The accelerator's C++ and its vitis_hls script; needs no Xilinx tool.
hls-src: model-known $(STAMP)
	$(PY) -m hls.estimate --model $(BUILD)/export --parallel $(BUILD)/hls/parallel.json
	$(PY) -m hls.generate --model $(BUILD)/export --out $(BUILD)/hls
	$(PY) -m hls.tcl --model $(BUILD)/export --hls $(BUILD)/hls

# HLS synthesis for the XC7Z020 (csim, csynth, interface check, export_design; cosim with
# COSIM=1); needs vitis_hls or vitis-run.
hls: model-known $(STAMP)
	$(PY) -m hls.synth --model $(BUILD)/export --hls $(BUILD)/hls $(if $(filter 1,$(COSIM)),--cosim)

# Resources and speed on the XC7Z020, estimated from the layer graph; refuses what does not fit.
estimate: model-known $(STAMP)
	$(PY) -m hls.estimate --model $(BUILD)/export --parallel $(BUILD)/hls/parallel.json \
		--json $(BUILD)/hls/estimate.json --cycles $(BUILD)/hls/cycles.json

# Then the cycle-accounting build (-DWQ_CYCLES): cycles.json; a port over-subscription or a
# FIFO channel accessed out of order fails it.
csim: hls-src
	$(PY) -m hls.check --model $(BUILD)/export --hls $(BUILD)/hls
	$(PY) -m hls.cycles --model $(BUILD)/export --hls $(BUILD)/hls --json $(BUILD)/hls/cycles.json --strict

# One synthesizable test top per layer kind, each with its vitis_hls script;
# --csim runs every test bench against the golden replies with g++.
layer-tops: $(STAMP)
	$(PY) -m hls.layer_tops --out build/layer_tops --csim

# HLS synthesis (vitis_hls), then the Vivado block design to waferq.bit/.hwh/.xsa.
# Without vitis_hls or vivado on PATH it stops with one sentence and exit code 2.
bitstream: model-known $(STAMP)
	$(PY) -m zybo_z7.bitstream --model $(BUILD)/export --out $(BUILD)/bitstream $(if $(filter 1,$(COSIM)),--cosim)

# The device tree overlay for the DMA and the accelerator, from the board facts.
dtbo: model-known $(STAMP)
	$(PY) -m zybo_z7.board --out $(BUILD)/bitstream --model $(BUILD)/export
	cpp -nostdinc -undef -x assembler-with-cpp -P -I drivers/include -I $(BUILD)/bitstream \
		zybo_z7/dts/waferq-overlay.dtso | dtc -@ -I dts -O dtb -o $(BUILD)/bitstream/waferq.dtbo

# Native amd64, and ARMv7 against Zynq-configured 6.1 and 6.12 trees, at W=1 (warnings fail),
# plus checkpatch; see drivers/README.md.
driver: $(STAMP)
	$(MAKE) -C drivers all PYTHON=$(abspath $(PY)) OUT=$(abspath build/driver) JOBS=2

# JTAG with openFPGALoader; SD-card boot is in zybo_z7/README.md.
flash: model-known $(STAMP)
	$(PY) -m zybo_z7.flash --bit $(BUILD)/bitstream/waferq.bit

# Accuracy against bits for every wafer-map family (FP32, PTQ-8, W8A8..W2A2); --quick is minutes.
bench-bits: $(STAMP)
	$(PY) -m bench.accuracy_vs_bits --quick --out build/bench_bits

bench: model-known $(STAMP)
	$(PY) -m bench.pipeline --model $(BUILD)/export --hls $(BUILD)/hls --out $(BUILD)/bench
	$(PY) -m zybo_z7.rtl.synth --out build/bench/rtl_synth.json
	$(PY) -m bench.hls_resources --out build/bench
	$(PY) -m bench.finn_anchor --out build/bench
	$(PY) -m bench.csim_speed --out build/bench
	$(PY) -m bench.hls_cycles --out build/bench
	$(PY) -m bench.hls4ml_compare --out build/bench
	$(PY) -m bench.end_to_end --model $(BUILD)/export --out build/bench

demo: $(STAMP)
	$(MAKE) export
	$(MAKE) csim
	$(PY) -m scripts.demo --model $(BUILD)/export --out build/demo --n 1000

test: tools $(STAMP)
	$(PY) -m pytest -q -ra tests

clean:
	rm -rf build

# --- deployment (deploy/): the host wheel, the armhf run, the Zybo image, make deploy ---
APT_PKGS += qemu-user xilinx-bootgen openssh-server openssh-client python3-numpy python3-venv python3-pip \
            kmod systemd
.PHONY: host-wheel test-armhf image deploy

# The STM32MP1 host as a numpy-only wheel in build/dist/.
host-wheel: $(STAMP)
	$(PY) -m deploy.host_wheel --out build/dist

# The host as armhf under qemu-arm against the board service on loopback; ends "N passed, M failed".
test-armhf: $(STAMP)
	$(PY) tests/armhf/run.py --work build/armhf

# The SD card's files from make bitstream, dtbo, driver and export (deploy/image.py);
# FSBL=... UBOOT=... also make BOOT.BIN. Stops with one sentence naming what is missing.
IMAGE_BIT   ?= $(BUILD)/bitstream/waferq.bit
IMAGE_DTBO  ?= $(BUILD)/bitstream/waferq.dtbo
# The module for a kernel built from Debian's linux-source-6.12 with the Zynq options (make driver);
# a board on another kernel passes IMAGE_KO= its own build (drivers/README.md).
IMAGE_KO    ?= build/driver/zynq-6.12/waferq/waferq.ko
IMAGE_MODEL ?= $(BUILD)/export
IMAGE_OUT   ?= $(BUILD)/image
image: model-known $(STAMP)
	$(PY) -m deploy.image --bit $(IMAGE_BIT) --dtbo $(IMAGE_DTBO) --ko $(IMAGE_KO) \
		--model $(IMAGE_MODEL) --out $(IMAGE_OUT) $(if $(FSBL),--fsbl $(FSBL)) $(if $(UBOOT),--uboot $(UBOOT))

# make deploy BOARD=root@zybo HOST=root@stm32mp1 [HOST_CONFIG=host.toml] [KEY=wire.key] [BOARD_ENV=board.env]
# over SSH: install, enable, restart, then the health check (status from the host); deploy/deploy.py.
deploy: model-known $(STAMP)
	$(PY) -m deploy.deploy $(if $(BOARD),--board $(BOARD)) $(if $(HOST),--host $(HOST)) \
		--image $(IMAGE_OUT) --model $(IMAGE_MODEL) $(if $(HOST_CONFIG),--host-config $(HOST_CONFIG)) \
		$(if $(KEY),--key-file $(KEY)) $(if $(BOARD_ENV),--board-env $(BOARD_ENV)) $(DEPLOY_OPTS)

# --- end-to-end CPU per map (issue 20) ---
.PHONY: bench-e2e
# host -> TCP -> service -> char-device stand-in -> cached / reference core / C-sim, and
# the service alone, at batch 1/16/64/256: maps/s, CPU us a map of each process (median
# and spread of 5 repeats), the 5 us goal's ratio, the board budget; table +
# build/bench/end_to_end.json. A random W4A4 model unless MODEL is built.
bench-e2e: $(STAMP)
	$(PY) -m bench.end_to_end $(if $(wildcard $(BUILD)/export/model.json),--model $(BUILD)/export) --out build/bench

# --- board service abuse bench (issue 21) ---
.PHONY: bench-abuse
# Pre-auth, slowloris and amplification against a keyed service on loopback:
# peak RSS and threads of the service process, table + build/bench/abuse.json.
bench-abuse: $(STAMP)
	$(PY) -m bench.abuse --out build/bench

# --- real wafer maps (issue 15) ---
# DATA=<LSWMD-format .pkl> (or a cache folder of quant.datasets.stream) with no
# CONFIG trains the recommended model for real maps
# (quant/configs/wmcnn_real_4w4a.json) into build/wm811k_4w4a/.
# A MODEL named after a config (other than the demo's wmcnn_4w4a, which keeps the
# W_BITS/A_BITS/FP_EPOCHS/QAT_EPOCHS knobs) trains with that config.
CONFIG ?= $(strip $(if $(filter %.pkl,$(DATA))$(wildcard $(DATA)/meta.json),quant/configs/wmcnn_real_4w4a.json,\
            $(if $(filter-out wmcnn_4w4a,$(MODEL)),$(wildcard quant/configs/$(MODEL).json))))

# --- waferq driver in a booted kernel (issue 14) ---
APT_PKGS += qemu-system-arm linux-source-6.1 linux-source-6.12 bc bison flex libssl-dev \
            libelf-dev cpio kmod
.PHONY: driver-qemu driver-qemu-kmemleak
# The real module in Debian's armmp kernel under QEMU (-M virt, TCG) with a TEST-ONLY DMA
# model; ends with "N passed, M failed". KMEMLEAK=1 (or driver-qemu-kmemleak): in a small
# kmemleak kernel built from linux-source-6.1 instead (minutes of CPU once, then cached),
# plus a kmemleak scan; WQ_LEAK=1 adds a deliberate leak in the model (that run must
# fail). See drivers/README.md.
KMEMLEAK ?= 0
WQ_LEAK  ?= 0
driver-qemu: $(STAMP)
	PYTHON=$(abspath $(PY)) JOBS=2 KMEMLEAK=$(KMEMLEAK) WQ_LEAK=$(WQ_LEAK) tests/qemu/run.sh
driver-qemu-kmemleak:
	$(MAKE) driver-qemu KMEMLEAK=1
