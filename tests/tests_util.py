"""Writers of files in the original formats, for tests."""

import numpy as np
import tensorflow as tf


def write_tf_checkpoint(prefix, tensors) -> str:
  """Writes `{name: array}` as a TF1 `Saver` checkpoint (the model-zoo format)."""
  prefix = str(prefix)
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(np.asarray(v), name=n) for n, v in tensors.items()]
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, prefix, write_meta_graph=False)
  return prefix
