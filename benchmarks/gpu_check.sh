#!/usr/bin/env bash
# One-shot check for an H100/H200 machine: needs only PyTorch (+ what travels with the repository);
# finishes in under 8 minutes. Writes OUTDIR/*.json, OUTDIR/gpu_check.log and OUTDIR/SUMMARY.md.
#   bash benchmarks/gpu_check.sh OUTDIR
# - training-step throughput of r3d18 (16x112^2) and r50 (8x224^2) in fp32, fp32+cl, bf16, bf16+cl,
#   each with its weight gradients compared with fp32 (so cuDNN's bf16 path is verified before
#   its speed is claimed), plus the student step with its two frozen teachers;
# - the loss kernels: Triton / fused vs reference;
# - when DALI is importable (source .dali/install_dali.sh first) and GPU_CHECK_DATA names a prepared
#   dataset (made elsewhere with `tbfast data prep`: the GPU machine has no PyAV), the mixed (NVDEC)
#   pipeline's rate against its decode-only ceiling, and the data wait per training step (r3d18 bf16
#   fed by that pipeline: `tbfast train invariant` and, with a splits/labeled_*.txt of at least one
#   batch, `train supervised`, 60 steps each; the trainer's data share of the wall time).
# Optional wheels (pytorchvideo, fvcore, iopath for r50) may be carried in .whl/ (see README).
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
# the repository without installing it: tbfast_benchmarks is the benchmarks/ folder
shim=$(mktemp -d)
ln -s "$root/benchmarks" "$shim/tbfast_benchmarks"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$shim/site" .whl/*.whl \
    && export PYTHONPATH="$shim/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root:$shim${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu_check.log"
tb() { timeout "$1" $py -m tbfast "${@:2}" 2>&1 | tee -a "$log"; }
start=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | tee "$log"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" | tee -a "$log"

# GPU_CHECK_DRY=1 runs the same plumbing on the CPU with tiny shapes (to test the script without a GPU)
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  dev=cpu; step_opts=(--quick --configs fp32 bf16 bf16+cl); loss_opts=(--quick)
  wait_opts=(--device cpu --backbone tiny --size 32 --batch-size 4 --precision fp32 --max-steps 10); ldev=cpu
else
  dev=cuda; step_opts=(--steps 10 --warmup 3 --configs fp32 fp32+cl bf16 bf16+cl); loss_opts=()
  wait_opts=(--device cuda --backbone r3d18 --size 112 --precision bf16 --max-steps 60); ldev=gpu
fi
tb 150 bench step --backbone r3d18 --device $dev "${step_opts[@]}" --no-compile --json "$out/step_r3d18.json"
if $py -c "import pytorchvideo.models" 2>/dev/null; then
  tb 150 bench step --backbone r50 --device $dev "${step_opts[@]}" --no-compile --no-student --json "$out/step_r50.json"
else
  echo "pytorchvideo not importable here: r50 skipped (carry its wheels in .whl/)" | tee -a "$log"
fi
tb 90 bench losses --device $dev "${loss_opts[@]}" --json "$out/losses.json"
ngpu=$($py -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$ngpu" -ge 2 ]; then  # NCCL: the cost of gathered negatives and synchronised BatchNorm per step
  tb 150 bench dist --device cuda --world 2 --backbone r3d18 --size 112 --batch-size 8 --json "$out/dist_nccl.json"
else
  echo "fewer than 2 GPUs: NCCL cost of gathered negatives / synchronised BatchNorm skipped" | tee -a "$log"
fi
if ! $py -c "import nvidia.dali" 2>/dev/null; then
  echo "DALI not importable here: NVDEC decode rate skipped (source .dali/install_dali.sh first)" | tee -a "$log"
elif [ -z "${GPU_CHECK_DATA:-}" ] || [ ! -f "${GPU_CHECK_DATA}/manifest.jsonl" ]; then
  echo "GPU_CHECK_DATA does not name a prepared dataset: NVDEC decode rate skipped" | tee -a "$log"
else
  tb 90 bench loader "$GPU_CHECK_DATA" --mode ssl --device $ldev --loaders dali,decode --json "$out/loader_gpu.json"
  # the data wait per training step: r3d18 in bf16 fed by the NVDEC pipeline, the trainer's own
  # measure (time blocked on the next batch / wall time, metrics.jsonl "data_share") over its windows
  split=$(ls "$GPU_CHECK_DATA"/splits/labeled_*.txt 2>/dev/null | head -1)
  for stage in invariant supervised; do
    extra=()
    if [ "$stage" = supervised ]; then
      [ -n "$split" ] || { echo "no splits/labeled_*.txt in GPU_CHECK_DATA: the supervised data wait skipped" | tee -a "$log"; continue; }
      extra=(--labeled "$split")
    fi
    tb 90 train $stage --data "$GPU_CHECK_DATA" --out "$out/wait_$stage" --overwrite "${wait_opts[@]}" \
      --epochs 1000 --save-every 1000 --warmup-epochs 0 --log-every 5 --no-progress "${extra[@]}"
  done
fi
$py - "$out" <<'PY' | tee "$out/SUMMARY.md"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("# GPU check\n")
for name in ("step_r3d18", "step_r50"):
    f = out / f"{name}.json"
    if not f.exists():
        continue
    r = json.loads(f.read_text())
    print(f"## {r['backbone']} {r['clip_shape']} batch {r['batch']} on {r['machine'].get('gpu') or r['machine'].get('cpu')}\n")
    print("| config | clips/s | speed-up | peak MiB | grads match fp32 | rel. err |\n|---|---|---|---|---|---|")
    for c in r["configs"]:
        sp = c["counted_speedup"]
        print(f"| {c['config']} | {c['clips_per_s']:.1f} | {'-' if sp is None else f'{sp:.2f}x'} | {c['peak_mem_mb']:.0f} | {'yes' if c['grad_ok'] else 'NO'} | {c['grad_rel_err']:.1e} |")
    st = r.get("student")
    if st:
        for k, v in st.items():
            if k.startswith("teachers_"):
                print(f"\nstudent step, {k}: {v['clips_per_s']:.1f} clips/s, teachers' share {100*v['teacher_share']:.0f}%")
    print()
for stage in ("invariant", "supervised"):
    f = out / f"wait_{stage}" / "metrics.jsonl"
    if not f.exists():
        continue
    steps = [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
    steps = [r for r in steps if r.get("kind") == "step"][1:]  # the first window holds the start-up
    if steps:
        share = sum(r["data_share"] for r in steps) / len(steps)
        cps = sum(r["clips_per_s"] for r in steps) / len(steps)
        print(f"data wait, train {stage}: {100 * share:.1f}% of the step time at {cps:.1f} clips/s "
              f"(windows after the first: {len(steps)})\n")
for name in ("losses", "loader_gpu"):
    f = out / f"{name}.json"
    print(f"- {name}: {'written' if f.exists() else 'missing'}")
PY
echo "gpu_check finished in $(( $(date +%s) - start )) s" | tee -a "$log"
rm -rf "$shim"
