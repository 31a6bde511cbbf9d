"""DeepLab in JAX: `python main.py --config=configs/voc_mnv2.py --workdir=DIR [--mode=...]`.

The command line lives in deeplab_jax/cli.py (its docstring lists the modes);
`pip install -e .` also installs it as the `deeplab-jax` command.
"""

from deeplab_jax import cli

if __name__ == '__main__':
  cli.run()
