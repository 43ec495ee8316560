"""jaxconcepts: concept-based explanations of image classifiers in JAX/Flax.

The curated functional API, by group (the subpackages hold more):

* Models and the split (``jaxconcepts.models``): `create_model`, `init_variables`,
  `split`, `Split`, `resolve_layer`, `layer_shapes`, `params_from_torch`,
  `create_decoder`.
* Attribution (``jaxconcepts.methods.attribution``, rules in ``jaxconcepts.ops``):
  `gradient`, `gradient_x_input`, `integrated_gradients`, `deeplift`,
  `deeplift_ig`, `layer_deeplift_smoothgrad`, `gradcam`, `smoothgrad`.
* NMF and pairwise classifiers (``jaxconcepts.ops``): `nmf`, `nmf_batched`,
  `nmf_transform`, `NMFResult`, `train_pairwise`, `PairwiseResult`.
* Concepts and contrast (``jaxconcepts.methods``): `explain_class`,
  `concept_matrix`, `pixel_scores`, `extract_concepts`, `crop_geometry`,
  `search_crops`, `extract_crops`, `stitched_images`, `contrast_vectors`,
  `shifting_stats`, `bias_probe`.
* ClaDec and occlusion (``jaxconcepts.methods``): `cladec_loss`, `RefAE`,
  `reconstruction_metrics`, `square_masks`, `occlusion_accuracy`.
* Data (``jaxconcepts.data``): `load_dataset`, `Dataset`, `batches`.

Every function takes weights as arguments (nothing is captured in a jitted
closure), so the same compiled program serves any checkpoint of an
architecture.
"""

import os as _os

# TensorFlow comes in with clu's metric writers (TensorBoard event files) and TFDS, and prints
# C++ notices as it loads (oneDNN, absl). It computes nothing of ours, so its notices and oneDNN
# kernels are off unless the user set these variables before importing jaxconcepts. This must
# run before any import below pulls TensorFlow in.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from jaxconcepts.data.sources import Dataset  # noqa: E402  (after the environment above)
from jaxconcepts.data.batching import batches
from jaxconcepts.data.sources import load_dataset
from jaxconcepts.methods.attribution import deeplift
from jaxconcepts.methods.attribution import deeplift_ig
from jaxconcepts.methods.attribution import gradcam
from jaxconcepts.methods.attribution import gradient
from jaxconcepts.methods.attribution import gradient_x_input
from jaxconcepts.methods.attribution import integrated_gradients
from jaxconcepts.methods.attribution import layer_deeplift_smoothgrad
from jaxconcepts.methods.cladec import RefAE
from jaxconcepts.methods.cladec import cladec_loss
from jaxconcepts.methods.cladec import reconstruction_metrics
from jaxconcepts.methods.concepts import concept_matrix
from jaxconcepts.methods.concepts import explain_class
from jaxconcepts.methods.concepts import extract_concepts
from jaxconcepts.methods.concepts import pixel_scores
from jaxconcepts.methods.contrast import bias_probe
from jaxconcepts.methods.contrast import contrast_vectors
from jaxconcepts.methods.contrast import shifting_stats
from jaxconcepts.methods.crops import crop_geometry
from jaxconcepts.methods.crops import extract_crops
from jaxconcepts.methods.crops import search_crops
from jaxconcepts.methods.crops import stitched_images
from jaxconcepts.methods.occlusion import occlusion_accuracy
from jaxconcepts.methods.occlusion import square_masks
from jaxconcepts.models.classifiers import create_model
from jaxconcepts.models.classifiers import init_variables
from jaxconcepts.models.decoders import create_decoder
from jaxconcepts.models.split import Split
from jaxconcepts.models.split import layer_shapes
from jaxconcepts.models.split import resolve_layer
from jaxconcepts.models.split import split
from jaxconcepts.models.torch_import import params_from_torch
from jaxconcepts.ops.attribution import smoothgrad
from jaxconcepts.ops.nmf import NMFResult
from jaxconcepts.ops.nmf import nmf
from jaxconcepts.ops.nmf import nmf_batched
from jaxconcepts.ops.nmf import transform as nmf_transform
from jaxconcepts.ops.pairwise import PairwiseResult
from jaxconcepts.ops.pairwise import train_pairwise

__version__ = "0.1.0"

__all__ = (
    # models and the split
    "create_model", "init_variables", "split", "Split", "resolve_layer", "layer_shapes",
    "params_from_torch", "create_decoder",
    # attribution
    "gradient", "gradient_x_input", "integrated_gradients", "deeplift", "deeplift_ig",
    "layer_deeplift_smoothgrad", "gradcam", "smoothgrad",
    # NMF and pairwise classifiers
    "nmf", "nmf_batched", "nmf_transform", "NMFResult", "train_pairwise", "PairwiseResult",
    # concepts and contrast
    "explain_class", "concept_matrix", "pixel_scores", "extract_concepts", "crop_geometry",
    "search_crops", "extract_crops", "stitched_images", "contrast_vectors", "shifting_stats",
    "bias_probe",
    # ClaDec and occlusion
    "cladec_loss", "RefAE", "reconstruction_metrics", "square_masks", "occlusion_accuracy",
    # data
    "load_dataset", "Dataset", "batches",
)
