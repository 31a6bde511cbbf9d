"""The speed benchmarks run without TensorFlow, TFDS or CLU and report their fields.

An accelerator machine has JAX, Flax, optax, orbax and ml_collections but not
the input pipeline's packages; the benchmarks must import none of them.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a script with TensorFlow, TFDS and CLU unimportable (the script's
# folder must be on PYTHONPATH, as `python script.py` would put it first).
_WITHOUT_TF = r'''
import importlib.abc, runpy, sys
class Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'clu'):
      raise ImportError(f'{name} is not on the accelerator machine')
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''

_TIMING_FIELDS = ('state_init_seconds', 'compile_seconds', 'first_call_seconds',
                  'seconds_per_call', 'images_per_second', 'peak_memory_mb', 'peak_memory_of')


def _run(tmp_path, script, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=os.pathsep.join(
      [os.path.join(REPO, 'benchmarks'), os.environ['PYTHONPATH']]))
  result = subprocess.run(
      [sys.executable, '-c', _WITHOUT_TF, os.path.join(REPO, 'benchmarks', script),
       '--config=configs/voc_mnv2.py:tiny', '--batch_size=1', '--crop_size=33',
       '--dtype=bfloat16', f'--compilation_cache_dir={tmp_path}', *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _check_timing_fields(record):
  assert record['dtype'] == 'bfloat16'
  for field in _TIMING_FIELDS:
    assert field in record, field
  assert record['compile_seconds'] > 0 and record['first_call_seconds'] > 0
  assert record['peak_memory_mb'] > 0
  assert record['peak_memory_of'] == 'host_rss'  # The CPU backend keeps no device statistics.


def test_train_step_benchmark_reports_init_compile_first_step_and_memory(tmp_path):
  _check_timing_fields(_run(tmp_path, 'train_step.py', '--repeats=1'))


def test_accelerator_script_dry_run_writes_a_line_per_part(tmp_path):
  """Runs inference.py through the script (in bfloat16, without TensorFlow)."""
  # Scripts run by `python` here cannot import TensorFlow, as on the accelerator machine.
  wrapper = tmp_path / 'python_without_tf'
  wrapper.write_text(f'#!/bin/sh\ncase "$1" in *.py) PYTHONPATH="$(dirname "$1"):$PYTHONPATH" '
                     f'exec {sys.executable} -c "$WITHOUT_TF" "$@";; '
                     f'*) exec {sys.executable} "$@";; esac\n')
  wrapper.chmod(0o755)
  env = dict(os.environ, ACCEL_DRY_RUN='1', PYTHON=str(wrapper), WITHOUT_TF=_WITHOUT_TF,
             TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(
      ['bash', os.path.join(REPO, 'benchmarks', 'accelerator.sh'), str(tmp_path / 'results'),
       'infer_mnv2_bf16'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in open(tmp_path / 'results' / 'accelerator.jsonl')]
  assert [line['part'] for line in lines] == ['start', 'infer_mnv2_bf16', 'torch_infer_mnv2_bf16']
  ours = lines[1]
  assert ours['status'] == 'ok', ours
  _check_timing_fields(ours)
  assert ours['batch_size'] == 2 and ours['crop_size'] == [65, 65]
  assert lines[2]['status'] in ('ok', 'skipped')  # Skipped where torch is not installed.
  assert 'infer_mnv2_bf16' in result.stdout  # The summary table.
