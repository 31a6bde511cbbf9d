"""deeplab_jax: DeepLab v3/v3+ semantic segmentation in JAX/Flax."""

from deeplab_jax import backbones
from deeplab_jax.checkpoint_import import import_tf_checkpoint
from deeplab_jax.scoring import class_probabilities, predict_labels
from deeplab_jax.model import DeepLab, create_model
from deeplab_jax.resize import resize_bilinear, resize_nearest, scale_dimension
from deeplab_jax.variables import CheckpointMismatchError
from deeplab_jax.predictor import Predictor
