#!/usr/bin/env bash
# One prepared run for a machine with a CUDA GPU: every chapter's smoke profile trained on the GPU,
# then the MNIST benchmark with its CUDA rows beside the CPU ones (the CNF and latent ODE benchmarks
# measure CPU steps of small models, where a GPU does not help; see their chapters). Meant for a short lease of a device
# (it needs torch, torchdiffeq, matplotlib, seaborn and ray, not Jupyter), so it is one command:
#
#   bash benchmarks/device.sh              # ODECORE_DEVICE=cuda; results under $OUT (a temp folder if unset)
#   ODECORE_DEVICE=cpu bash benchmarks/device.sh   # the same steps on the CPU, to try the script here
#
# Nothing goes to data/results/: the smoke records, logs and benchmark printouts land in $OUT. MNIST is
# read from $ODECORE_MNIST_DIR (copy ../shared/data/mnist into a git-ignored folder, e.g. .dev/mnist, to
# carry it to a device). Each step's wall time is printed; a failed step is reported and the rest still run,
# and the exit status is 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python}
export ODECORE_DEVICE=${ODECORE_DEVICE:-cuda}
export ODECORE_RESULTS_DIR=$OUT/results ODECORE_CHECKPOINT_DIR=$OUT/checkpoints ODECORE_SCRATCH_DIR=$OUT/scratch
export ODECORE_MNIST_DIR=${ODECORE_MNIST_DIR:-$PWD/.dev/mnist}
export TQDM_DISABLE=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT/logs"
failed=0

step() {   # step NAME COMMAND...: run it, log it, print its wall time and status
  local name=$1; shift
  local start=$(date +%s%N)
  if "$@" > "$OUT/logs/$name.log" 2>&1; then status=ok; else status=FAILED; failed=1; fi
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '%-24s %-6s %5d.%01d s   (%s)\n' "$name" "$status" $((ms / 1000)) $((ms % 1000 / 100)) "$OUT/logs/$name.log"
  [ "$status" = ok ] || tail -n 5 "$OUT/logs/$name.log"
}

echo "device $ODECORE_DEVICE; output in $OUT"
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
for chapter in adjoint mnist cnf latent_ode; do
  step "smoke-$chapter" "$PYTHON" -m odecore.experiments "$chapter" --profile smoke --rerun
done
devices=cpu; [ "$ODECORE_DEVICE" = cpu ] || devices="cpu cuda"
step bench-mnist "$PYTHON" benchmarks/mnist.py --devices $devices --steps 3
cat "$OUT/logs/bench-mnist.log"
exit $failed
