#!/usr/bin/env bash
# The accelerator table of ours against PyTorch in one run, each part under its
# own `timeout`, one JSON line per part appended to RESULTS/accelerator.jsonl as
# it finishes (and every part's output to RESULTS/accelerator.log), so a slow
# part costs only itself.
#
#   bash benchmarks/accelerator.sh [RESULTS_DIR] [PART_FILTER...]
#
# RESULTS_DIR defaults to $OUT, else ./accelerator_results. PART_FILTERs are
# substrings of part names (e.g. `flags`, `x65`, `torch`); without any, all
# parts run, in the order below, until ACCEL_BUDGET_S (default 570) seconds are
# spent; a part that would start later is recorded as skipped.
#
# Parts (batch 16, 513x513 ours, 512x512 PyTorch smp DeepLabV3+, channels-last,
# output stride 16):
#   train_mnv2_bf16 ........ ours, MobileNetV2 v3+ (voc_mnv2 + decoder), XLA's default flags
#   flags_* ................ the same with one XLA GPU flag that may cut compile time
#   torch_train_* .......... PyTorch eager, bf16 = autocast, float32 with TF32
#   train_{mnv2,x65}_* ..... ours, bf16 and float32 (with ACCEL_XLA_FLAGS, default none)
#   infer_* ................ inference, bf16
# Each of ours reports state_init_seconds, compile_seconds, first_call_seconds,
# seconds_per_call (steady step), images_per_second and peak_memory_mb.
#
# On the GPU machine (Python 3.12, jax CUDA, flax, optax, orbax, torch, timm;
# no ml_collections or segmentation_models_pytorch), from the repository root,
# with the two wheels in `.whl` (made once on a machine with the registry:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl \
#     ml_collections==1.1.0 segmentation_models_pytorch==0.6.0
# ) the device command is (run with carry=['.whl'], timeout_s=600):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 bash benchmarks/accelerator.sh
#
# Dry run on a CPU (tiny configs, batch 2, crop 65/64; PyTorch parts are
# skipped where torch is not installed):
#   ACCEL_DRY_RUN=1 bash benchmarks/accelerator.sh /tmp/accelerator_dry_run

set -u
cd "$(dirname "$0")/.."
# The package is imported from this checkout (there is no pip install of it here).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

results_dir=${1:-${OUT:-accelerator_results}}
shift $(( $# > 0 ? 1 : 0 ))
filters=("$@")
mkdir -p "$results_dir"
results="$results_dir/accelerator.jsonl"
log="$results_dir/accelerator.log"
python=${PYTHON:-python3}
deadline=$(( $(date +%s) + ${ACCEL_BUDGET_S:-570} ))
table_flags=${ACCEL_XLA_FLAGS:-}

if [[ -n ${ACCEL_DRY_RUN:-} ]]; then
  tiny=':tiny'; batch=2; crop=65; torch_crop=64; repeats=2; steps=2; limit_scale=3
else
  tiny=''; batch=16; crop=513; torch_crop=512; repeats=10; steps=10; limit_scale=1
fi

# part NAME SECONDS XLA_FLAGS COMMAND...: runs COMMAND under `timeout`, appends
# its JSON line (with part, status, wall_seconds) to $results.
part() {
  local name=$1 limit=$(( $2 * limit_scale )) flags=$3
  shift 3
  if (( ${#filters[@]} )); then
    local wanted=0 f
    for f in "${filters[@]}"; do [[ $name == *"$f"* ]] && wanted=1; done
    (( wanted )) || return 0
  fi
  local left=$(( deadline - $(date +%s) ))
  if (( left < 30 )); then
    echo "{\"part\": \"$name\", \"status\": \"skipped\", \"reason\": \"ACCEL_BUDGET_S spent\"}" >> "$results"
    return 0
  fi
  (( limit > left )) && limit=$left
  echo "=== $name (timeout ${limit}s, XLA_FLAGS=$flags): $*" >> "$log"
  local start=$(date +%s.%N) output status
  output=$(XLA_FLAGS="$flags" timeout --kill-after=10 "$limit" "$@" 2>> "$log")
  status=$?
  echo "$output" >> "$log"
  PART="$name" STATUS="$status" LIMIT="$limit" FLAGS="$flags" START="$start" \
    LINE="$(grep '^{' <<< "$output" | tail -1)" TAIL="$(tail -n 3 "$log" | tr -d '\000')" \
    "$python" - >> "$results" <<'EOF'
import json, os, time
status = int(os.environ['STATUS'])
record = {'part': os.environ['PART'], 'xla_flags_set': os.environ['FLAGS'],
          'wall_seconds': round(time.time() - float(os.environ['START']), 1)}
line = os.environ['LINE']
if status == 0 and line:
  record.update(status='ok', **json.loads(line))
elif status == 0:
  record.update(status='skipped', reason='printed no JSON line (torch or smp not installed)')
elif status in (124, 137):
  record.update(status='timeout', timeout_seconds=int(os.environ['LIMIT']))
else:
  record.update(status='failed', exit_code=status, stderr_tail=os.environ['TAIL'][-600:])
print(json.dumps(record), flush=True)
EOF
  tail -n 1 "$results"
}

ours_train() {  # CONFIG DTYPE
  echo "$python" benchmarks/train_step.py --config="configs/$1$tiny" --batch_size=$batch \
    --crop_size=$crop --decoder --dtype="$2" --repeats=$repeats
}
ours_infer() {
  echo "$python" benchmarks/inference.py --config="configs/$1$tiny" --batch_size=$batch \
    --crop_size=$crop --decoder --dtype="$2" --repeats=$repeats
}
torch_run() {  # MODE ENCODER DTYPE
  if ! "$python" -c 'import torch, segmentation_models_pytorch' 2> /dev/null; then
    echo true  # Recorded as a part without a JSON line.
    return
  fi
  local device=cpu
  "$python" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2> /dev/null && device=cuda
  echo "$python" benchmarks/pytorch_reference.py --mode="$1" --encoder="$2" --device=$device \
    --dtype="$3" --channels_last --batch_size=$batch --crop_size=$torch_crop --steps=$steps \
    --repeats=$repeats
}

echo "{\"part\": \"start\", \"time\": \"$(date -u +%FT%TZ)\", \"dry_run\": \"${ACCEL_DRY_RUN:-}\", \"table_xla_flags\": \"$table_flags\"}" >> "$results"
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv >> "$log" 2>&1

# The headline first: MobileNetV2 v3+ bf16 training as XLA compiles it by default.
part train_mnv2_bf16 240 "" $(ours_train voc_mnv2.py bfloat16)
# XLA GPU flags that may cut compile time, one per run (what else they cost
# shows in seconds_per_call): no conv/GEMM autotuning at all; autotuning on
# uninitialised buffers without correctness checks; cuBLAS instead of Triton
# GEMM fusions (no tile search); no emitter autotuning; no command buffers.
part flags_autotune0_mnv2_bf16 150 "--xla_gpu_autotune_level=0" $(ours_train voc_mnv2.py bfloat16)
part flags_autotune1_mnv2_bf16 150 "--xla_gpu_autotune_level=1" $(ours_train voc_mnv2.py bfloat16)
part flags_no_triton_gemm_mnv2_bf16 150 "--xla_gpu_enable_triton_gemm=false" $(ours_train voc_mnv2.py bfloat16)
part torch_train_mnv2_bf16 120 "" $(torch_run train mobilenet_v2 bfloat16)
part train_x65_bf16 240 "$table_flags" $(ours_train voc_xception65.py bfloat16)
part torch_train_x65_bf16 150 "" $(torch_run train tu-xception65 bfloat16)
part train_mnv2_f32 180 "$table_flags" $(ours_train voc_mnv2.py float32)
part torch_train_mnv2_f32 120 "" $(torch_run train mobilenet_v2 float32)
part train_x65_f32 240 "$table_flags" $(ours_train voc_xception65.py float32)
part torch_train_x65_f32 150 "" $(torch_run train tu-xception65 float32)
part infer_mnv2_bf16 120 "$table_flags" $(ours_infer voc_mnv2.py bfloat16)
part torch_infer_mnv2_bf16 90 "" $(torch_run inference mobilenet_v2 bfloat16)
part flags_no_fusion_autotuner_mnv2_bf16 150 "--xla_gpu_experimental_enable_fusion_autotuner=false" $(ours_train voc_mnv2.py bfloat16)
part flags_no_command_buffer_mnv2_bf16 150 "--xla_gpu_enable_command_buffer=" $(ours_train voc_mnv2.py bfloat16)

# The table, last: one line per part.
"$python" - "$results" <<'EOF'
import json, sys
print(f"{'part':38s} {'status':8s} {'img/s':>8s} {'init s':>7s} {'compile s':>9s} {'1st s':>6s} {'peak MB':>8s}")
for line in open(sys.argv[1]):
  r = json.loads(line)
  if r['part'] == 'start':
    continue
  print(f"{r['part']:38s} {r['status']:8s} {r.get('images_per_second', ''):>8} "
        f"{r.get('state_init_seconds', ''):>7} {r.get('compile_seconds', r.get('warmup_seconds', '')):>9} "
        f"{r.get('first_call_seconds', ''):>6} {r.get('peak_memory_mb', ''):>8}")
EOF
