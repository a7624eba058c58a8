# Convenience wrappers; the scripts do the work (and need nothing but Python >= 3.11.4).
.PHONY: run test lint clean
run:
	scripts/run.sh
test:
	scripts/test.sh
lint:
	.venv/bin/snakemake --lint
clean:
	rm -rf results .snakemake test-artifacts
